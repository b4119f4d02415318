"""Import ``onnx`` and ``onnxruntime`` with one clear message when they are missing.

Torch-free: the ONNX runtime side of mmsam imports this module.
"""

import importlib
from types import ModuleType

INSTALL_HINT = (
    'pip install mmsam[onnx] (or pip install onnx onnxruntime, as listed in '
    'requirements/optional.txt)'
)


def _import(name: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f'`{name}` is needed {purpose} but could not be imported ({exc}). '
            f'Install the ONNX extra: {INSTALL_HINT}'
        ) from exc


def import_onnx() -> ModuleType:
    """Return the ``onnx`` module, or raise ImportError naming ``pip install mmsam[onnx]``."""
    return _import('onnx', 'to export SAM to ONNX')


def import_onnxruntime() -> ModuleType:
    """Return ``onnxruntime``, or raise ImportError naming ``pip install mmsam[onnx]``."""
    return _import('onnxruntime', 'to run SAM ONNX graphs')
