"""Opt-in speed options of the SAM model: mixed precision and ``torch.compile``.

Both change numerics or start-up cost, so both are off by default.
"""

import contextlib
from typing import Callable, ContextManager, Optional, Union

import torch
import torch.nn as nn

_DTYPES = {
    'bfloat16': torch.bfloat16,
    'bf16': torch.bfloat16,
    'float16': torch.float16,
    'fp16': torch.float16,
    'half': torch.float16,
}

DtypeLike = Union[None, str, torch.dtype]


def parse_autocast_dtype(dtype: DtypeLike) -> Optional[torch.dtype]:
    """Read an autocast dtype option.

    Args:
        dtype (None | str | torch.dtype): ``None``, ``'float32'``/``'fp32'`` (no
            autocast), ``'bfloat16'``/``'bf16'``, ``'float16'``/``'fp16'``, or the
            matching ``torch.dtype``.

    Returns:
        torch.dtype | None: The autocast dtype, None for plain fp32.
    """
    if dtype is None or dtype in ('float32', 'fp32', torch.float32):
        return None
    if isinstance(dtype, torch.dtype) and dtype in (torch.bfloat16, torch.float16):
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(
        f'autocast_dtype must be None, "float32", "bfloat16" or "float16" (or a torch dtype), '
        f'got {dtype!r}'
    )


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]) -> ContextManager:
    """``torch.autocast`` for ``device`` in ``dtype``, or a no-op for ``None``.

    float16 runs only on CUDA (CPU kernels in fp16 are slow or missing); use
    bfloat16 on the CPU.
    """
    if dtype is None:
        return contextlib.nullcontext()
    device = torch.device(device)
    if dtype == torch.float16 and device.type != 'cuda':
        raise ValueError(
            f'autocast_dtype float16 needs a CUDA device, the model is on {device.type}; '
            'use bfloat16 instead'
        )
    return torch.autocast(device_type=device.type, dtype=dtype)


def compile_module(module: nn.Module, options: Union[bool, dict, None]) -> Optional[Callable]:
    """``torch.compile(module, **options)``, or None when ``options`` is falsy.

    Args:
        module (nn.Module): What to compile.
        options (bool | dict | None): True for the defaults, a dict of
            ``torch.compile`` keyword arguments, or False/None for no compilation.

    Returns:
        callable | None: The compiled module (keep it outside the module tree so
        that state-dict keys do not change).
    """
    if not options:
        return None
    kwargs = dict(options) if isinstance(options, dict) else {}
    return torch.compile(module, **kwargs)
