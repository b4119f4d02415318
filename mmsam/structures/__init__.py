"""Data structures and transforms: coordinate transforms, masks and RLE."""

from .transforms import (
    apply_boxes,
    apply_coords,
    get_preprocess_shape,
    image_to_rgb_uint8,
    resize_longest_side,
)

__all__ = [
    'apply_boxes',
    'apply_coords',
    'get_preprocess_shape',
    'image_to_rgb_uint8',
    'resize_longest_side',
]
