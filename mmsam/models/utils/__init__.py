"""Helpers shared by mmsam's model parts."""

from .speed_options import autocast_context, compile_module, parse_autocast_dtype

__all__ = ['autocast_context', 'compile_module', 'parse_autocast_dtype']
