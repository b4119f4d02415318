"""Data structures and transforms: coordinate transforms, boxes, mask post-processing,
AMG grids and crops, RLE and polygons."""

from .._compat import torch_installed
from .prompts import (
    PromptArrays,
    check_box_order,
    check_prompt_batch,
    prepare_prompts,
    prompt_batch_size,
)
from .transforms import (
    apply_boxes,
    apply_coords,
    as_finite_float_array,
    get_preprocess_shape,
    image_to_rgb_uint8,
    resize_longest_side,
)

# torch-free installs (the mmsam.deploy ONNX runtime) get the transforms only
if torch_installed():
    from .amg import (
        build_all_layer_point_grids,
        build_point_grid,
        generate_crop_boxes,
        is_box_near_crop_edge,
        remove_small_regions,
        uncrop_boxes_xyxy,
        uncrop_masks,
        uncrop_points,
    )
    from .boxes import batched_mask_to_box, box_xyxy_to_xywh, masks_to_boxes
    from .mask_postprocess import (
        calculate_stability_score,
        select_best_candidate,
        stability_counts,
        upscale_mask_logits,
    )
    from .polygons import (
        DEFAULT_POLYGON_MIN_IOU,
        mask_to_coco_polygons,
        mask_to_polygons,
        polygons_to_mask,
        polygons_to_rle,
        segmentation_area_bbox,
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

__all__ = [
    'PromptArrays',
    'check_box_order',
    'check_prompt_batch',
    'prepare_prompts',
    'prompt_batch_size',
    'apply_boxes',
    'apply_coords',
    'as_finite_float_array',
    'get_preprocess_shape',
    'image_to_rgb_uint8',
    'resize_longest_side',
]
if torch_installed():
    __all__ += [
        'batched_mask_to_box',
        'box_xyxy_to_xywh',
        'build_all_layer_point_grids',
        'build_point_grid',
        'calculate_stability_score',
        'generate_crop_boxes',
        'is_box_near_crop_edge',
        'masks_to_boxes',
        'remove_small_regions',
        'select_best_candidate',
        'stability_counts',
        'uncrop_boxes_xyxy',
        'uncrop_masks',
        'uncrop_points',
        'upscale_mask_logits',
        'DEFAULT_POLYGON_MIN_IOU',
        'mask_to_coco_polygons',
        'mask_to_polygons',
        'polygons_to_mask',
        'polygons_to_rle',
        'segmentation_area_bbox',
        'coco_rle_area',
        'coco_rle_to_mask',
        'mask_to_rle',
        'masks_to_coco_rle',
        'rle_area',
        'rle_to_mask',
        'uncompressed_to_coco_rle',
    ]
