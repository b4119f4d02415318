"""Backbones registered in mmpretrain's MODELS registry."""

from .sam_image_encoder import SAMEncoderLayer, SAMImageEncoder, resize_abs_pos_embed

__all__ = ['SAMImageEncoder', 'SAMEncoderLayer', 'resize_abs_pos_embed']
