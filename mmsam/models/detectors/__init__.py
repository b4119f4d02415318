"""Detectors registered in mmdet's MODELS registry."""

from .interactive_sam import InteractiveSAM
from .sam import SAM, masks_to_boxes

__all__ = ['InteractiveSAM', 'SAM', 'masks_to_boxes']
