"""Training and testing machinery for mmengine's runner (registered in mmdet's registries)."""

from .hooks import PlainCheckpointHook
from .runner import SAMRunner, build_runner

__all__ = ['PlainCheckpointHook', 'SAMRunner', 'build_runner']
