"""Simulated prompts for training SAM (the SAM paper, section 3 and appendix A).

Per ground-truth instance the first prompt is, with equal probability, its box with
noise (standard deviation 10% of the side per coordinate, at most 20 pixels) or one
point drawn uniformly inside its mask. The next rounds add one point each, drawn
uniformly from the error region between the previous prediction and the ground
truth: positive where the prediction missed the object (false negative), negative
where it spilled over (false positive). Some rounds add no point and only feed the
previous mask back (the paper: 8 point rounds plus 2 mask-only rounds, one of them
last, the other at a random position among the point rounds).

Points are pixel indices ``(x, y) = (col, row)`` of the masks' frame. All draws take a
``torch.Generator`` so that a sample's prompts do not depend on which process, batch
position or device handles it.
"""

from typing import List, Optional, Tuple

import torch

#: round kinds of :meth:`PromptSimulator.round_plan`
FIRST, POINT, MASK_ONLY = 'first', 'point', 'mask_only'


def _uniform_index(regions: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Flat index of a pixel drawn uniformly from each region (the first pixel if empty)."""
    flat = regions.flatten(1)
    scores = torch.rand(flat.shape, generator=generator, device=flat.device)
    return torch.where(flat, scores, scores.new_tensor(-1.0)).argmax(dim=1)


def sample_points_in_masks(
    masks: torch.Tensor, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One point drawn uniformly inside each mask.

    Args:
        masks (Tensor): ``(N, H, W)`` bool.
        generator (torch.Generator, optional): Source of randomness (on ``masks``' device).

    Returns:
        tuple[Tensor, Tensor]: ``coords (N, 2)`` float32 ``(x, y)`` pixel indices and
        ``valid (N,)`` bool (False for an empty mask, whose point is ``(0, 0)``).
    """
    if masks.dim() != 3:
        raise ValueError(f'masks must have shape (N, H, W), got {tuple(masks.shape)}')
    masks = masks.bool()
    index = _uniform_index(masks, generator)
    width = masks.shape[-1]
    coords = torch.stack([index % width, index // width], dim=1).float()
    return coords, masks.flatten(1).any(dim=1)


def sample_error_points(
    pred_masks: torch.Tensor, gt_masks: torch.Tensor, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One corrective point per prediction, uniform over its error region.

    Args:
        pred_masks (Tensor): ``(N, H, W)`` bool predictions.
        gt_masks (Tensor): ``(N, H, W)`` bool ground truth.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        tuple[Tensor, Tensor]: ``coords (N, 2)`` float32 ``(x, y)`` and ``labels (N,)``
        int64: 1 when the point lies in a false-negative pixel, 0 in a false-positive
        one, -1 (a padding point, ignored by the prompt encoder) when the prediction is
        exact.
    """
    if pred_masks.shape != gt_masks.shape or pred_masks.dim() != 3:
        raise ValueError(
            'pred_masks and gt_masks must have the same shape (N, H, W), got '
            f'{tuple(pred_masks.shape)} and {tuple(gt_masks.shape)}'
        )
    pred_masks, gt_masks = pred_masks.bool(), gt_masks.bool()
    error = pred_masks ^ gt_masks
    coords, valid = sample_points_in_masks(error, generator)
    x, y = coords[:, 0].long(), coords[:, 1].long()
    rows = torch.arange(len(gt_masks), device=gt_masks.device)
    missed = gt_masks[rows, y, x]  # an error pixel inside the object is a false negative
    labels = torch.where(missed, 1, 0).to(torch.int64)
    labels = torch.where(valid, labels, torch.full_like(labels, -1))
    return coords, labels


def noisy_boxes(
    boxes: torch.Tensor,
    noise_ratio: float = 0.1,
    max_noise: float = 20.0,
    generator: Optional[torch.Generator] = None,
    bounds: Optional[Tuple[float, float]] = None,
) -> torch.Tensor:
    """Jitter XYXY boxes as the SAM paper does for its box prompts.

    Each coordinate moves by Gaussian noise with a standard deviation of
    ``noise_ratio`` times the box's side along that axis, clipped to ``max_noise``
    pixels; the result is clipped to ``bounds`` and its corners re-ordered.

    Args:
        boxes (Tensor): ``(N, 4)`` XYXY.
        noise_ratio (float): Noise std as a fraction of the side. Defaults to 0.1.
        max_noise (float): Largest shift of a coordinate, pixels. Defaults to 20.
        generator (torch.Generator, optional): Source of randomness.
        bounds (tuple[float, float], optional): ``(width, height)`` to clip to.

    Returns:
        Tensor: ``(N, 4)`` float32 XYXY.
    """
    boxes = boxes.float()
    sides = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1)
    std = (noise_ratio * sides).repeat(1, 2)  # (w, h, w, h)
    noise = torch.randn(boxes.shape, generator=generator, device=boxes.device) * std
    out = boxes + noise.clamp(-max_noise, max_noise)
    if bounds is not None:
        width, height = bounds
        out[:, 0::2] = out[:, 0::2].clamp(0, width)
        out[:, 1::2] = out[:, 1::2].clamp(0, height)
    x1, x2 = torch.minimum(out[:, 0], out[:, 2]), torch.maximum(out[:, 0], out[:, 2])
    y1, y2 = torch.minimum(out[:, 1], out[:, 3]), torch.maximum(out[:, 1], out[:, 3])
    return torch.stack([x1, y1, x2, y2], dim=1)


class PromptSimulator:
    """The interactive prompting schedule of SAM's training.

    Args:
        box_prob (float): Probability that an instance's first prompt is its noisy box
            (else one point inside its mask). Defaults to 0.5.
        box_noise_ratio (float): See :func:`noisy_boxes`. Defaults to 0.1.
        box_noise_max (float): See :func:`noisy_boxes`. Defaults to 20.
        num_point_rounds (int): Rounds after the first that add one corrective point.
            Defaults to 8.
        num_mask_only_rounds (int): Rounds that add no point and only feed the previous
            mask back; the last one ends the schedule, the others are placed at random
            among the point rounds. Defaults to 2.
    """

    def __init__(
        self,
        box_prob: float = 0.5,
        box_noise_ratio: float = 0.1,
        box_noise_max: float = 20.0,
        num_point_rounds: int = 8,
        num_mask_only_rounds: int = 2,
    ) -> None:
        if not 0.0 <= box_prob <= 1.0:
            raise ValueError(f'box_prob must be in [0, 1], got {box_prob}')
        if num_point_rounds < 0 or num_mask_only_rounds < 0:
            raise ValueError(
                'num_point_rounds and num_mask_only_rounds must be >= 0, got '
                f'{num_point_rounds} and {num_mask_only_rounds}'
            )
        self.box_prob = float(box_prob)
        self.box_noise_ratio = float(box_noise_ratio)
        self.box_noise_max = float(box_noise_max)
        self.num_point_rounds = int(num_point_rounds)
        self.num_mask_only_rounds = int(num_mask_only_rounds)

    def round_plan(self, generator: Optional[torch.Generator] = None) -> List[str]:
        """The kinds of the rounds, first to last (``'first'``, ``'point'``, ``'mask_only'``)."""
        plan = [POINT] * self.num_point_rounds
        if self.num_mask_only_rounds:
            for _ in range(self.num_mask_only_rounds - 1):
                pos = int(torch.randint(0, len(plan) + 1, (1,), generator=generator))
                plan.insert(pos, MASK_ONLY)
            plan.append(MASK_ONLY)
        return [FIRST] + plan

    def first_prompts(
        self,
        gt_masks: torch.Tensor,
        gt_boxes: torch.Tensor,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first prompt of each instance, in the masks' frame.

        Args:
            gt_masks (Tensor): ``(N, H, W)`` bool, non-empty.
            gt_boxes (Tensor): ``(N, 4)`` XYXY.
            generator (torch.Generator, optional): Source of randomness.

        Returns:
            tuple[Tensor, Tensor, Tensor]: ``use_box (N,)`` bool, ``boxes (N, 4)`` (noisy;
            meaningful where ``use_box``) and ``points (N, 2)`` (meaningful elsewhere).
        """
        n = len(gt_masks)
        use_box = torch.rand(n, generator=generator, device=gt_masks.device) < self.box_prob
        height, width = gt_masks.shape[-2:]
        boxes = noisy_boxes(
            gt_boxes.to(gt_masks.device),
            self.box_noise_ratio,
            self.box_noise_max,
            generator,
            bounds=(float(width), float(height)),
        )
        points, _ = sample_points_in_masks(gt_masks, generator)
        return use_box, boxes, points

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(box_prob={self.box_prob}, '
            f'box_noise_ratio={self.box_noise_ratio}, box_noise_max={self.box_noise_max}, '
            f'num_point_rounds={self.num_point_rounds}, '
            f'num_mask_only_rounds={self.num_mask_only_rounds})'
        )
