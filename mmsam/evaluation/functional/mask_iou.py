"""Intersection over union of binary masks."""

from typing import Union

import numpy as np
import torch

MaskLike = Union[np.ndarray, torch.Tensor]


def to_bool_masks(masks) -> torch.Tensor:
    """Masks (array, tensor or mmdet ``BitmapMasks``) as a bool tensor ``(..., H, W)``."""
    if hasattr(masks, 'to_ndarray'):  # mmdet BitmapMasks / PolygonMasks
        masks = masks.to_ndarray()
    masks = torch.as_tensor(masks)
    return masks if masks.dtype == torch.bool else masks != 0


def mask_iou(pred: MaskLike, gt: MaskLike) -> torch.Tensor:
    """IoU of binary masks, broadcast over leading dimensions (exact counts, float64).

    Args:
        pred (np.ndarray | Tensor): ``(..., H, W)`` bool or 0/1.
        gt (np.ndarray | Tensor | BitmapMasks): ``(..., H, W)``, broadcastable to ``pred``.

    Returns:
        Tensor: ``(...)`` float64 in ``[0, 1]``; 1.0 where both masks are empty.
    """
    pred = to_bool_masks(pred)
    gt = to_bool_masks(gt).to(pred.device)
    if pred.shape[-2:] != gt.shape[-2:]:
        raise ValueError(
            f'pred masks {tuple(pred.shape)} and gt masks {tuple(gt.shape)} differ in size'
        )
    inter = (pred & gt).sum(dim=(-2, -1), dtype=torch.int64)
    union = (pred | gt).sum(dim=(-2, -1), dtype=torch.int64)
    iou = inter.double() / union.clamp(min=1).double()
    return torch.where(union == 0, torch.ones_like(iou), iou)
