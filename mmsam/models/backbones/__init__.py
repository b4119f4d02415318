"""Backbones registered in mmpretrain's MODELS registry."""

from .sam_image_encoder import SAMEncoderLayer, SAMImageEncoder, resize_abs_pos_embed
from .sam_tinyvit import SAMTinyViT

__all__ = ['SAMImageEncoder', 'SAMEncoderLayer', 'SAMTinyViT', 'resize_abs_pos_embed']
