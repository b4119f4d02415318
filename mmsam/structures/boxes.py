"""Boxes of masks and box formats.

The box of a mask is XYXY with *inclusive* ends in the official
``segment_anything.utils.amg`` (``x2`` = last foreground column,
:func:`batched_mask_to_box`) and with exclusive ends in mmdet (:func:`masks_to_boxes`).
"""

import numpy as np
import torch


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
