"""Point grids, crop boxes, mask scores and box helpers of automatic mask generation.

Each function gives the same numbers as its counterpart in the official
``segment_anything.utils.amg`` (boxes of masks are XYXY with *inclusive* ends there,
``x2`` = last foreground column), written to avoid full-size temporaries.
"""

import math
from itertools import product
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``n_per_side ** 2`` points evenly spaced in ``[0, 1]^2``, cell centres, x fastest.

    Returns:
        np.ndarray: ``(n_per_side ** 2, 2)`` float64 ``(x, y)``.
    """
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> List[np.ndarray]:
    """One grid per crop layer; layer ``i`` has ``int(n_per_side / scale ** i)`` per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: Sequence[int], n_layers: int, overlap_ratio: float
) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes of all layers: the whole image, then ``(2 ** i) ** 2`` overlapping crops.

    Args:
        im_size (tuple[int, int]): ``(H, W)``.
        n_layers (int): Crop layers beyond the whole image.
        overlap_ratio (float): Overlap of first-layer crops, as a fraction of the short side.

    Returns:
        tuple[list[list[int]], list[int]]: XYXY boxes and their layer indices.
    """
    im_h, im_w = int(im_size[0]), int(im_size[1])
    short_side = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]

    def crop_len(length: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + length) / n_crops))

    for layer in range(n_layers):
        n_crops = 2 ** (layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops))
        crop_w = crop_len(im_w, n_crops, overlap)
        crop_h = crop_len(im_h, n_crops, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_crops)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_crops)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer + 1)
    return boxes, layers


def stability_counts(
    logits: torch.Tensor, mask_threshold: float, offset: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixels above ``threshold + offset`` and above ``threshold - offset`` per mask.

    Args:
        logits (Tensor): ``(N, H, W)`` mask logits.

    Returns:
        tuple[Tensor, Tensor]: ``(N,)`` int64 each.
    """
    high = (logits > (mask_threshold + offset)).sum(dim=(-2, -1))
    low = (logits > (mask_threshold - offset)).sum(dim=(-2, -1))
    return high, low


def calculate_stability_score(
    logits: torch.Tensor, mask_threshold: float, offset: float
) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold + offset`` and ``threshold - offset``.

    One mask always contains the other, so the IoU is a ratio of pixel counts.

    Args:
        logits (Tensor): ``(N, H, W)`` mask logits.

    Returns:
        Tensor: ``(N,)`` float32 (NaN where both masks are empty).
    """
    high, low = stability_counts(logits, mask_threshold, offset)
    return high.to(torch.int32) / low.to(torch.int32)


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """XYXY boxes with inclusive ends around boolean masks (the official AMG convention).

    Args:
        masks (Tensor): ``(..., H, W)`` bool.

    Returns:
        Tensor: ``(..., 4)`` int64; ``[0, 0, 0, 0]`` for an empty mask.
    """
    h, w = masks.shape[-2:]
    lead = masks.shape[:-2]
    if masks.numel() == 0:
        return torch.zeros(*lead, 4, dtype=torch.int64, device=masks.device)
    flat = masks.reshape(-1, h, w)
    rows = flat.any(dim=-1).to(torch.uint8)  # (N, H)
    cols = flat.any(dim=-2).to(torch.uint8)  # (N, W)
    top = rows.argmax(dim=-1)
    bottom = h - 1 - rows.flip(-1).argmax(dim=-1)
    left = cols.argmax(dim=-1)
    right = w - 1 - cols.flip(-1).argmax(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    boxes[rows.amax(dim=-1) == 0] = 0
    return boxes.reshape(*lead, 4)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes of boolean masks, mmdet convention (``x2 = last column + 1``).

    Args:
        masks (Tensor): ``(N, H, W)`` bool.

    Returns:
        Tensor: ``(N, 4)`` float32; all zeros for an empty mask.
    """
    boxes = batched_mask_to_box(masks).to(torch.float32)
    nonempty = masks.flatten(-2).any(dim=-1)
    boxes[nonempty, 2:] += 1  # inclusive ends -> exclusive
    return boxes


def box_xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` XYXY to XYWH (a new tensor or array of the same type)."""
    out = boxes.clone() if isinstance(boxes, torch.Tensor) else np.array(boxes)
    out[..., 2] = out[..., 2] - out[..., 0]
    out[..., 3] = out[..., 3] - out[..., 1]
    return out


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Shift ``(N, 4)`` XYXY boxes from a crop's frame to the image frame."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Shift ``(N, 2)`` points from a crop's frame to the image frame."""
    return points + torch.tensor([int(crop_box[0]), int(crop_box[1])], device=points.device)


def uncrop_masks(
    masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int
) -> torch.Tensor:
    """Zero-pad ``(N, h, w)`` crop masks to ``(N, orig_h, orig_w)`` image masks."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    pad = (x0, orig_w - x1, y0, orig_h - y1)
    return F.pad(masks, pad, value=0)


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """Whether crop-frame XYXY boxes touch the crop's edge where it is not the image's edge.

    Args:
        boxes (Tensor): ``(N, 4)`` in the crop's frame.
        crop_box (list[int]): The crop, XYXY in the image frame.
        orig_box (list[int]): The image, ``[0, 0, W, H]``.
        atol (float): Distance counted as touching, in pixels.

    Returns:
        Tensor: ``(N,)`` bool.
    """
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(boxes, crop[None], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, orig[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> Tuple[np.ndarray, bool]:
    """Fill small holes or remove small islands of a mask (8-connectivity, OpenCV).

    Args:
        mask (np.ndarray): ``(H, W)`` bool.
        area_thresh (float): Regions with fewer pixels are changed.
        mode (str): ``'holes'`` or ``'islands'``. When every island is small, the
            largest is kept.

    Returns:
        tuple[np.ndarray, bool]: the mask and whether it changed.
    """
    import cv2

    if mode not in ('holes', 'islands'):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == 'holes'
    working = (mask ^ holes).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(working, 8)
    sizes = stats[1:, -1]  # label 0 is the background
    small = np.flatnonzero(sizes < area_thresh) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        fill = np.concatenate(([0], small))
    else:
        fill = np.setdiff1d(np.arange(1, n_labels), small)
        if len(fill) == 0:
            fill = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(regions, fill), True


def upscale_mask_logits(
    low_res: torch.Tensor,
    image_size: int,
    input_size: Sequence[int],
    original_size: Sequence[int],
) -> torch.Tensor:
    """``SAM.postprocess_masks`` with the same numbers and less work.

    The official post-processing upsamples ``(4E, 4E)`` logits bilinearly to the padded
    input ``(S, S)``, crops the resized image ``(h, w)`` and resizes that to ``(H, W)``.
    Here only the low-resolution rows/columns that reach the crop are upsampled (with
    the same scale factor, so every output pixel is computed from the same inputs and
    weights), and the last resize is skipped when ``(h, w) == (H, W)`` (it is then the
    identity).

    Args:
        low_res (Tensor): ``(N, C, L, L)`` logits (``L = S / 4`` for SAM).
        image_size (int): ``S``.
        input_size (tuple[int, int]): ``(h, w)``.
        original_size (tuple[int, int]): ``(H, W)``.

    Returns:
        Tensor: ``(N, C, H, W)`` logits.
    """
    h, w = int(input_size[0]), int(input_size[1])
    out_h, out_w = int(original_size[0]), int(original_size[1])
    low = low_res.shape[-1]
    if low_res.shape[-2] != low or image_size % low:
        return _reference_upscale(low_res, image_size, (h, w), (out_h, out_w))
    factor = image_size // low

    def needed(length: int) -> int:
        # last source index used by output pixel ``length - 1``, plus its neighbour
        last = max(math.floor((length - 0.5) / factor - 0.5), 0)
        return min(low, last + 2)

    src = low_res[..., : needed(h), : needed(w)]
    masks = F.interpolate(
        src,
        scale_factor=(float(factor), float(factor)),
        mode='bilinear',
        align_corners=False,
        recompute_scale_factor=False,
    )[..., :h, :w]
    if (h, w) == (out_h, out_w):
        return masks
    return F.interpolate(masks, (out_h, out_w), mode='bilinear', align_corners=False)


def _reference_upscale(low_res, image_size, input_size, original_size) -> torch.Tensor:
    masks = F.interpolate(low_res, (image_size, image_size), mode='bilinear', align_corners=False)[
        ..., : input_size[0], : input_size[1]
    ]
    return F.interpolate(masks, original_size, mode='bilinear', align_corners=False)
