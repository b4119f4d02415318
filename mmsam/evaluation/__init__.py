"""Evaluation of prompted segmentation: click simulation, mask IoU and metrics.

Importing ``mmsam.evaluation`` registers its metrics in ``mmdet.registry.METRICS``.
"""

from .functional import distance_to_boundary, farthest_point, mask_iou, next_click, to_bool_masks
from .metrics import *  # noqa: F401,F403
from .metrics import __all__ as _metrics

__all__ = [
    'distance_to_boundary',
    'farthest_point',
    'mask_iou',
    'next_click',
    'to_bool_masks',
    *_metrics,
]
