"""SAM's training losses: focal + dice on the mask logits, MSE on the predicted IoU."""

from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS

from ...evaluation.functional import mask_iou


@MODELS.register_module()
class SAMMaskLoss(nn.Module):
    """The SAM paper's loss of one prediction round, per instance.

    The mask loss is ``focal + dice`` with weights 20:1, as DETR's (which the paper
    cites) on the upscaled logits: mmdet's ``FocalLoss`` (sigmoid focal loss on the
    logits, ``alpha=0.25``, ``gamma=2``, averaged over the pixels of each mask) and
    ``DiceLoss`` with ``naive_dice=True, eps=1``, i.e. DETR's
    ``1 - (2 * sum(p * t) + 1) / (sum(p) + sum(t) + 1)`` with ``p = sigmoid(logit)``
    (mmdet's default, ``naive_dice=False``, squares ``p`` and ``t`` in the
    denominator, which is V-Net's variant, not DETR's). When several outputs are
    given for one instance (an ambiguous single-point prompt) each is scored and only
    the lowest mask loss counts. The IoU head is supervised on every output with the
    mean square error between its prediction and the IoU of the output's binary mask
    (``logit > mask_threshold``) with the ground truth.

    Args:
        loss_focal (dict): mmdet loss config; its ``reduction`` is overridden.
        loss_dice (dict): mmdet loss config; its ``reduction`` is overridden.
        loss_iou (dict): mmdet loss config; its ``reduction`` is overridden.
        mask_threshold (float): Logit threshold of the binary masks. Defaults to 0.
    """

    def __init__(
        self,
        loss_focal: Optional[dict] = None,
        loss_dice: Optional[dict] = None,
        loss_iou: Optional[dict] = None,
        mask_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        if loss_focal is None:
            loss_focal = dict(
                type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=20.0
            )
        if loss_dice is None:
            loss_dice = dict(
                type='DiceLoss',
                use_sigmoid=True,
                activate=True,
                naive_dice=True,
                eps=1.0,
                loss_weight=1.0,
            )
        if loss_iou is None:
            loss_iou = dict(type='MSELoss', loss_weight=1.0)
        self.loss_focal = MODELS.build(loss_focal)
        self.loss_dice = MODELS.build(loss_dice)
        self.loss_iou = MODELS.build(loss_iou)
        self.mask_threshold = float(mask_threshold)

    def forward(
        self, mask_logits: torch.Tensor, iou_pred: torch.Tensor, gt_masks: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-instance losses of ``N`` instances with ``C`` outputs each.

        Args:
            mask_logits (Tensor): ``(N, C, H, W)`` logits in the ground truth's frame.
            iou_pred (Tensor): ``(N, C)`` predicted IoUs.
            gt_masks (Tensor): ``(N, H, W)`` bool.

        Returns:
            tuple[Tensor, Tensor, Tensor, Tensor]: focal ``(N,)`` and dice ``(N,)`` of
            the kept output (weighted), IoU loss ``(N,)`` (mean over the ``C`` outputs,
            weighted) and the index of the kept output ``(N,)`` int64.
        """
        n, c = mask_logits.shape[:2]
        if gt_masks.shape[0] != n or gt_masks.shape[-2:] != mask_logits.shape[-2:]:
            raise ValueError(
                f'mask_logits {tuple(mask_logits.shape)} and gt_masks '
                f'{tuple(gt_masks.shape)} do not match (N, C, H, W) / (N, H, W)'
            )
        logits = mask_logits.float().flatten(2)  # (N, C, HW)
        target = gt_masks.flatten(1)[:, None].expand_as(logits).float()
        focal = self.loss_focal(
            logits.flatten(0, 1), target.flatten(0, 1), reduction_override='none'
        )
        focal = focal.mean(dim=1).view(n, c)
        dice = self.loss_dice(
            logits.flatten(0, 1), target.flatten(0, 1), reduction_override='none'
        ).view(n, c)
        best = (focal + dice).detach().argmin(dim=1)
        rows = torch.arange(n, device=best.device)
        with torch.no_grad():
            iou_target = mask_iou(mask_logits > self.mask_threshold, gt_masks[:, None])
        iou_loss = self.loss_iou(
            iou_pred.float(),
            iou_target.to(iou_pred.device, torch.float32),
            reduction_override='none',
        ).mean(dim=1)
        return focal[rows, best], dice[rows, best], iou_loss, best
