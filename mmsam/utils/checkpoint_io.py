"""Reading and writing mmsam checkpoints.

An mmsam checkpoint is what mmengine's runner writes and reads:
``{'meta': {...}, 'state_dict': {name: tensor}}``. It holds only tensors and
plain Python values, so ``torch.load(path, weights_only=True)`` (torch's
default since 2.6) reads it. Files are written whole or not at all: the data
goes to a temporary file in the destination folder, which is renamed over the
destination only after it has been flushed to disk.
"""

import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .atomic_file import atomic_write

_PLAIN_TYPES = (str, int, float, bool, type(None))


class CheckpointLoadError(ValueError):
    """A checkpoint file that cannot be loaded: unreadable, or not a SAM state dict.

    The message names the file and the reason. Command-line tools turn it into one
    line and a non-zero exit code.
    """


class CheckpointMismatchError(CheckpointLoadError):
    """A checkpoint whose keys or shapes do not fit the model it is loaded into."""


def _check_plain(value: Any, where: str) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` would reject."""
    if isinstance(value, _PLAIN_TYPES) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f'{where}[{i}]')
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, _PLAIN_TYPES):
                raise TypeError(
                    f'{where}: key {key!r} is a {type(key).__name__}; '
                    'checkpoint keys must be str, int, float or bool'
                )
            _check_plain(item, f'{where}[{key!r}]')
        return
    raise TypeError(
        f'{where} is a {type(value).__name__}; a checkpoint may hold only tensors, '
        'str, int, float, bool, None, lists, tuples and dicts so that '
        'torch.load(weights_only=True) can read it'
    )


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file and a rename.

    Args:
        obj: what to save.
        path: the destination; its folder is created if missing.
    """
    with atomic_write(path, 'wb') as f:
        torch.save(obj, f)


def save_checkpoint(
    state_dict: Mapping[str, torch.Tensor], path: str, meta: Optional[Dict[str, Any]] = None
) -> None:
    """Write ``{'meta': meta, 'state_dict': state_dict}`` to ``path`` atomically.

    Args:
        state_dict: parameter name -> tensor. Tensors are saved detached, on
            the CPU and contiguous.
        path: the destination ``.pth`` file.
        meta: plain-Python metadata (for example ``arch``, ``converted_from``).

    Raises:
        TypeError: if ``state_dict`` or ``meta`` holds something
            ``torch.load(weights_only=True)`` could not read back.
    """
    clean: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f'state_dict key {key!r} is a {type(key).__name__}, expected str')
        if not isinstance(value, torch.Tensor):
            raise TypeError(f'state_dict[{key!r}] is a {type(value).__name__}, expected a tensor')
        clean[key] = value.detach().cpu().contiguous()
    meta = dict(meta or {})
    _check_plain(meta, 'meta')
    atomic_torch_save({'meta': meta, 'state_dict': clean}, path)


def load_state_dict_file(path: str) -> 'OrderedDict[str, torch.Tensor]':
    """Read a state dict from a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file.

    Accepts a bare state dict (the official SAM files) or a dict with a
    ``state_dict`` or ``model`` entry (mmengine and other trainers). Reads
    with ``weights_only=True``.

    Args:
        path: the file.

    Returns:
        The state dict, tensors on the CPU.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointLoadError: if the file is not a checkpoint or holds no state dict.
    """
    return load_checkpoint_file(path)[0]


def _reason(error: Exception) -> str:
    """The first line of a loading error, without torch's advice to unpickle anyway.

    A file that ``weights_only=True`` refuses is not a plain tensor checkpoint; running
    its pickled code is never the answer for a file from the internet.
    """
    text = str(error).strip()
    first = text.splitlines()[0].strip() if text else ''
    if 'weights_only' in text or 'Weights only load failed' in text:
        first = (
            'it holds pickled Python objects other than tensors and plain values, which '
            'mmsam does not unpickle'
        )
    return f'{type(error).__name__}: {first}' if first else type(error).__name__


def load_checkpoint_file(path: str) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, Any]]:
    """Like :func:`load_state_dict_file`, also returning the file's ``meta`` dict.

    Args:
        path: the file.

    Returns:
        ``(state_dict, meta)``; ``meta`` is ``{}`` for bare state dicts and
        ``.safetensors`` files.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointLoadError: if the file is not a checkpoint or holds no state dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist')
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover - installed by the set-up
            raise ImportError(
                f'reading {path!r} needs safetensors: '
                "pip install 'mmsam[optional]' (or pip install safetensors)"
            ) from e
        try:
            return OrderedDict(load_file(path, device='cpu')), {}
        except Exception as e:
            raise CheckpointLoadError(
                f'{path!r} is not a readable safetensors file ({_reason(e)})'
            ) from e
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise CheckpointLoadError(
            f'{path!r} is not a readable PyTorch checkpoint ({_reason(e)})'
        ) from e
    if isinstance(obj, Mapping):
        meta = obj.get('meta')
        meta = dict(meta) if isinstance(meta, Mapping) else {}
        for key in ('state_dict', 'model'):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                return OrderedDict(inner), meta
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return OrderedDict(obj), {}
    raise CheckpointLoadError(
        f'{path!r} holds no state dict: expected a dict of tensors, or a dict with '
        f"a 'state_dict' or 'model' entry of tensors, got {type(obj).__name__}"
    )


#: Tables that a model may resample when its input size differs from the checkpoint's.
RESIZABLE_KEYS = ('pos_embed', 'rel_pos_h', 'rel_pos_w')


def _brief(items: List[str], limit: int = 6) -> str:
    shown = ', '.join(items[:limit])
    return shown + (f', ... ({len(items)} in all)' if len(items) > limit else '')


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    source: str,
    allow_resize: bool = True,
    detail: str = '',
) -> None:
    """Refuse a state dict that would not load whole and strictly.

    Every expected key must be present with the same shape, and every given key
    must be expected. Position tables (:data:`RESIZABLE_KEYS`) may differ in their
    spatial size when ``allow_resize`` (the image encoder resamples them on load).

    Args:
        expected: the model's state dict (tensors may be on the ``meta`` device).
        given: the checkpoint's, already in the model's key layout.
        source: the file or name to blame in the message.
        allow_resize: accept position tables of another spatial size.
        detail: a sentence to add (for example the two model sizes).

    Raises:
        CheckpointMismatchError: naming ``source``, the missing and unexpected keys
            and the shape mismatches, a few of each.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = []
    for key, want in expected.items():
        have = given.get(key)
        if have is None or tuple(have.shape) == tuple(want.shape):
            continue
        resizable = (
            allow_resize
            and key.rsplit('.', 1)[-1] in RESIZABLE_KEYS
            and have.dim() == want.dim()
            and have.shape[-1] == want.shape[-1]
        )
        if not resizable:
            mismatched.append(f'{key} {tuple(have.shape)} vs {tuple(want.shape)}')
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f'missing keys ({len(missing)}): {_brief(missing)}')
    if unexpected:
        parts.append(f'unexpected keys ({len(unexpected)}): {_brief(unexpected)}')
    if mismatched:
        parts.append(f'shape mismatches, checkpoint vs model ({len(mismatched)}): ')
        parts[-1] += _brief(mismatched, 4)
    detail = f' {detail}' if detail else ''
    raise CheckpointMismatchError(
        f'checkpoint {source!r} does not fit the model.{detail} ' + '; '.join(parts)
    )
