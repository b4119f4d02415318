"""Mask post-processing: logits upscaled to the image, stability score, best of C masks.

The model (``SAM``, ``InteractiveSAM``), the automatic mask generator, the predictor,
the command line and the ONNX decoder all use these, so each rule is written once.
"""

import math
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


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


def select_best_candidate(scores, *candidates) -> tuple:
    """Per prompt, the candidate mask with the highest predicted IoU (the first on ties).

    SAM's rule for turning its ``C`` multimask outputs into one answer; works on torch
    tensors and numpy arrays alike (each result is of its input's type).

    Args:
        scores (Tensor | np.ndarray): ``(N, C)`` predicted IoUs.
        *candidates (Tensor | np.ndarray): ``(N, C, ...)`` per-candidate values (masks,
            logits, ...), indexed like ``scores``.

    Returns:
        tuple: ``(best, best_scores, *best_candidates)``: ``best`` ``(N,)`` the chosen
        index, ``best_scores`` ``(N,)`` and each candidate's ``(N, ...)`` entry.
    """
    if scores.ndim != 2:
        raise ValueError(f'scores must be (N, C), got shape {tuple(scores.shape)}')
    best = scores.argmax(1)
    if isinstance(scores, torch.Tensor):
        rows = torch.arange(len(best), device=scores.device)
    else:
        rows = np.arange(len(best))
    return (best, scores[rows, best], *(c[rows, best] for c in candidates))
