"""Training and testing machinery for mmengine's runner (registered in mmdet's registries)."""

from .runner import SAMRunner

__all__ = ['SAMRunner']
