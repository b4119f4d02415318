"""Detectors registered in mmdet's MODELS registry."""

from .sam import SAM, masks_to_boxes

__all__ = ['SAM', 'masks_to_boxes']
