"""Parameter-efficient fine-tuning wrappers."""

from .sam_lora import SAMLoRAEncoder

__all__ = ['SAMLoRAEncoder']
