"""Training checkpoints that ``torch.load(weights_only=True)`` reads."""

from typing import Any

import numpy as np
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

_BUFFER, _ARRAY = '__history_buffer__', '__ndarray__'


def to_plain(value: Any) -> Any:
    """Replace mmengine ``HistoryBuffer`` objects and numpy values by plain data."""
    if isinstance(value, HistoryBuffer):
        logs, counts = value.data
        return {
            _BUFFER: True,
            'log_history': logs.tolist(),
            'count_history': counts.tolist(),
            'max_length': int(value.max_length),
        }
    if isinstance(value, np.ndarray):
        return {_ARRAY: value.tolist(), 'dtype': str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, to_plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


def from_plain(value: Any) -> Any:
    """Inverse of :func:`to_plain`."""
    if isinstance(value, dict):
        if value.get(_BUFFER) is True:
            return HistoryBuffer(value['log_history'], value['count_history'], value['max_length'])
        if _ARRAY in value and set(value) == {_ARRAY, 'dtype'}:
            return np.asarray(value[_ARRAY], dtype=value['dtype'])
        return type(value)((k, from_plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_plain(v) for v in value)
    return value


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Save training checkpoints without pickled Python objects, and read them back.

    mmengine stores its ``MessageHub`` (``HistoryBuffer`` objects holding numpy
    arrays) in every checkpoint, which torch >= 2.6 refuses to load by default
    (``weights_only=True``), so neither ``--resume`` nor ``tools/test.py`` could read a
    training checkpoint. This hook writes those parts as plain lists and numbers before
    saving and rebuilds them after loading; weights, optimizer and scheduler states are
    unchanged. mmsam's training configs add it to ``custom_hooks``.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ('meta', 'message_hub'):
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ('meta', 'message_hub'):
            if key in checkpoint:
                checkpoint[key] = from_plain(checkpoint[key])
