"""Mixed-precision training on the CPU (registered in mmdet's ``OPTIM_WRAPPERS``).

mmengine's ``AmpOptimWrapper`` refuses to be built without a CUDA (or NPU/MLU/MUSA)
device, and CPU autocast supports bfloat16 only. ``tools/train.py --amp`` therefore
picks ``AmpOptimWrapper`` on a CUDA machine and :class:`CPUAmpOptimWrapper` (bfloat16)
on a CPU-only one.
"""

from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmdet.registry import OPTIM_WRAPPERS
from mmengine.optim import OptimWrapper


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward pass runs under ``torch.autocast('cpu', bfloat16)``.

    Matrix products and convolutions run in bfloat16 (fast on CPUs with AMX or
    ``avx512_bf16``); parameters, gradients and the optimizer state stay float32.
    There is no loss scaling: bfloat16 has float32's exponent range, so gradients do
    not underflow as float16's do (mmengine's ``AmpOptimWrapper`` scales for float16).

    Args:
        dtype (str | torch.dtype): Must be bfloat16 (the only CPU autocast type).
            Defaults to ``'bfloat16'``.
        **kwargs: Arguments of ``OptimWrapper`` (``optimizer``, ``clip_grad``, ...).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs) -> None:
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(
                f'CPUAmpOptimWrapper: CPU autocast supports bfloat16 only, got dtype={dtype!r}; '
                'float16 mixed precision needs a CUDA device (AmpOptimWrapper)'
            )
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module):
        """mmengine's gradient-accumulation context plus bfloat16 CPU autocast."""
        devices = {p.device.type for p in model.parameters()}
        if devices - {'cpu'}:
            raise RuntimeError(
                f'CPUAmpOptimWrapper autocasts CPU operations only, the model is on '
                f'{sorted(devices)}: use AmpOptimWrapper on a GPU'
            )
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
