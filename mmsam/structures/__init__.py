"""Data structures and transforms: coordinate transforms, masks and RLE."""

from .amg_utils import (
    batched_mask_to_box,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    build_point_grid,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
    stability_counts,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from .rle import (
    coco_rle_area,
    coco_rle_to_mask,
    mask_to_rle,
    masks_to_coco_rle,
    rle_area,
    rle_to_mask,
    uncompressed_to_coco_rle,
)
from .transforms import (
    apply_boxes,
    apply_coords,
    get_preprocess_shape,
    image_to_rgb_uint8,
    resize_longest_side,
)

__all__ = [
    'batched_mask_to_box',
    'box_xyxy_to_xywh',
    'build_all_layer_point_grids',
    'build_point_grid',
    'calculate_stability_score',
    'generate_crop_boxes',
    'is_box_near_crop_edge',
    'remove_small_regions',
    'stability_counts',
    'uncrop_boxes_xyxy',
    'uncrop_masks',
    'uncrop_points',
    'coco_rle_area',
    'coco_rle_to_mask',
    'mask_to_rle',
    'masks_to_coco_rle',
    'rle_area',
    'rle_to_mask',
    'uncompressed_to_coco_rle',
    'apply_boxes',
    'apply_coords',
    'get_preprocess_shape',
    'image_to_rgb_uint8',
    'resize_longest_side',
]
