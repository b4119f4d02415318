"""Heads registered in mmdet's MODELS registry."""

from .sam_hq_mask_decoder import SAMHQMaskDecoder
from .sam_mask_decoder import MLP, SAMMaskDecoder
from .sam_prompt_encoder import SAMPromptEncoder

__all__ = ['SAMPromptEncoder', 'SAMMaskDecoder', 'SAMHQMaskDecoder', 'MLP']
