"""Drawing masks, points and boxes over images, and writing PNG files."""

from .image_writer import save_mask_png, save_png
from .mask_overlay import distinct_colors, draw_boxes, draw_masks, draw_points, overlay

__all__ = [
    'distinct_colors',
    'draw_boxes',
    'draw_masks',
    'draw_points',
    'overlay',
    'save_png',
    'save_mask_png',
]
