"""Functional forms of mmsam's evaluation protocols: click simulation and mask IoU."""

from .click_sampling import distance_to_boundary, farthest_point, next_click
from .mask_iou import mask_iou, to_bool_masks

__all__ = ['distance_to_boundary', 'farthest_point', 'mask_iou', 'next_click', 'to_bool_masks']
