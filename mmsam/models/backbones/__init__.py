"""Backbones registered in mmpretrain's MODELS registry."""

from .sam_efficientvit import SAMEfficientViT
from .sam_image_encoder import SAMImageEncoder
from .sam_tinyvit import SAMTinyViT

__all__ = ['SAMEfficientViT', 'SAMImageEncoder', 'SAMTinyViT']
