"""What automatic mask generation alone needs: point grids, crops and region clean-up.

Each function gives the same numbers as its counterpart in the official
``segment_anything.utils.amg``. The box helpers the model uses too live in
:mod:`.boxes`, the mask scores and upscaling in :mod:`.mask_postprocess`.
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
