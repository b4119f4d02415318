"""Training and testing machinery for mmengine's runner (registered in mmdet's registries)."""

from .hooks import PlainCheckpointHook
from .optim_wrapper import CPUAmpOptimWrapper
from .runner import SAMRunner, build_runner

__all__ = ['CPUAmpOptimWrapper', 'PlainCheckpointHook', 'SAMRunner', 'build_runner']
