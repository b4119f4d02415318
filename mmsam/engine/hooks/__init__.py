"""Runner hooks (registered in mmdet's ``HOOKS``)."""

from .main_process_logger_hook import MainProcessLoggerHook
from .plain_checkpoint_hook import PlainCheckpointHook

__all__ = ['MainProcessLoggerHook', 'PlainCheckpointHook']
