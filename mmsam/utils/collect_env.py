"""Versions of the stack mmsam runs on."""

import importlib
import platform
import sys
from collections import OrderedDict
from typing import List


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), '__version__', 'unknown')
    except Exception as exc:  # noqa: BLE001 - report any import failure as text
        return f'not usable ({type(exc).__name__}: {exc})'


def cpu_flags() -> List[str]:
    """The CPU features that change the speed of mmsam's kernels (``avx2``, ``avx512f``,
    ``avx512_bf16``, ``amx_bf16``) this machine has, from ``/proc/cpuinfo`` (empty where
    it cannot be read), for benchmark reports."""
    try:
        with open('/proc/cpuinfo', encoding='ascii') as f:
            flags = next(line for line in f if line.startswith('flags')).split()
    except (OSError, StopIteration):
        return []
    return [f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if f in flags]


def collect_env() -> 'OrderedDict[str, str]':
    """Collect the versions of Python, torch, mmcv (ops, CUDA), mmengine, mmpretrain, mmdet.

    Returns:
        OrderedDict[str, str]: name -> version or a short description.
    """
    import torch

    import mmsam

    env: OrderedDict[str, str] = OrderedDict()
    env['Python'] = sys.version.replace('\n', ' ')
    env['Platform'] = platform.platform()
    env['mmsam'] = mmsam.__version__
    env['torch'] = torch.__version__
    env['torch CUDA available'] = str(torch.cuda.is_available())
    env['torchvision'] = _version('torchvision')
    env['mmcv'] = _version('mmcv')
    try:
        from mmcv.ops import get_compiler_version, get_compiling_cuda_version

        env['mmcv ops'] = f'compiled ({get_compiler_version()})'
        env['mmcv CUDA ops'] = get_compiling_cuda_version()
    except Exception as exc:  # noqa: BLE001
        env['mmcv ops'] = f'not available ({type(exc).__name__}: {exc})'
    env['mmengine'] = _version('mmengine')
    env['mmpretrain'] = _version('mmpretrain')
    env['mmdet'] = _version('mmdet')
    env['pycocotools'] = _version('pycocotools')
    env['numpy'] = _version('numpy')
    env['segment_anything (reference)'] = (
        'installed' if importlib.util.find_spec('segment_anything') else 'not installed'
    )
    env['onnxruntime'] = _version('onnxruntime')
    return env
