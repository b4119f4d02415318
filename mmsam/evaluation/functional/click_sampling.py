"""Where to click: the point farthest from a region's boundary.

The SAM paper's point protocol (after RITM): the first click is the point of the
ground-truth mask farthest from its boundary (the maximum of the Euclidean distance
transform); each next click is the point farthest from the boundary of the larger
error region of the current prediction, positive in a false-negative region and
negative in a false-positive one. Points are integer pixel indices ``(x, y) = (col,
row)`` of the original image; the image border counts as boundary. Ties are broken
by the first pixel in row-major order.
"""

from typing import Optional, Tuple

import cv2
import numpy as np


def distance_to_boundary(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of each mask pixel to the nearest pixel outside it.

    Args:
        mask (np.ndarray): ``(H, W)`` bool or 0/1.

    Returns:
        np.ndarray: ``(H, W)`` float64; 0 outside the mask. Pixels outside the image
        count as outside the mask. Equal distances are equal floats (exact ties).
    """
    if mask.ndim != 2:
        raise ValueError(f'mask must have shape (H, W), got {mask.shape}')
    padded = np.pad(np.asarray(mask) != 0, 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    # Exact distances are square roots of integers. cv2's float32 values of equal
    # distances can differ in the last bit, depending on far-away pixels and on the
    # thread count, which would break ties at random: snap the squares to integers
    # (exact while the distance is below ~2000 pixels).
    return np.sqrt(np.rint(dist.astype(np.float64) ** 2))


def farthest_point(mask: np.ndarray) -> Tuple[Optional[Tuple[int, int]], float]:
    """The pixel of ``mask`` farthest from its boundary (the first in row-major order
    among equally far ones).

    Args:
        mask (np.ndarray): ``(H, W)`` bool.

    Returns:
        tuple: ``((x, y), distance)``, or ``(None, 0.0)`` for an empty mask.
    """
    mask = np.asarray(mask) != 0
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None, 0.0
    cols = np.flatnonzero(mask.any(axis=0))
    # the transform of the mask's bounding box is the same (outside it is outside the
    # mask, and where it touches the image border, the border stays a boundary)
    y0, x0 = rows[0], cols[0]
    dist = distance_to_boundary(mask[y0 : rows[-1] + 1, x0 : cols[-1] + 1])
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return (int(col + x0), int(row + y0)), float(dist[row, col])


def next_click(gt_mask: np.ndarray, pred_mask: np.ndarray) -> Optional[Tuple[int, int, int]]:
    """The next interactive click for a prediction.

    Args:
        gt_mask (np.ndarray): ``(H, W)`` bool ground truth.
        pred_mask (np.ndarray): ``(H, W)`` bool prediction.

    Returns:
        tuple | None: ``(x, y, label)`` with label 1 (in a false-negative region) or 0
        (in a false-positive one), whichever region reaches farther from its
        boundary (negative on ties); ``None`` when the prediction is exact.
    """
    gt_mask = np.asarray(gt_mask, dtype=bool)
    pred_mask = np.asarray(pred_mask, dtype=bool)
    if gt_mask.shape != pred_mask.shape:
        raise ValueError(f'gt_mask {gt_mask.shape} and pred_mask {pred_mask.shape} differ')
    fn_point, fn_dist = farthest_point(gt_mask & ~pred_mask)
    fp_point, fp_dist = farthest_point(pred_mask & ~gt_mask)
    if fn_point is None and fp_point is None:
        return None
    if fn_dist > fp_dist:
        return fn_point[0], fn_point[1], 1
    return fp_point[0], fp_point[1], 0
