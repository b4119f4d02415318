"""SAMMaskLoss against the formulas of the SAM paper / DETR, computed here in float64."""

import numpy as np
import torch

from mmsam.models.losses import SAMMaskLoss


def _reference(logits, iou_pred, gt, alpha=0.25, gamma=2.0):
    """focal (20x), dice (1x) of the lowest-loss output, IoU MSE over the outputs."""
    x = logits.astype(np.float64)
    t = gt.astype(np.float64)[:, None]
    p = 1.0 / (1.0 + np.exp(-x))
    # sigmoid focal loss (Lin et al.): -a_t (1 - p_t)^g log(p_t)
    p_t = p * t + (1 - p) * (1 - t)
    a_t = alpha * t + (1 - alpha) * (1 - t)
    focal = (-a_t * (1 - p_t) ** gamma * np.log(p_t)).mean(axis=(2, 3)) * 20.0
    # DETR's dice: 1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)
    inter = (p * t).sum(axis=(2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(axis=(2, 3)) + t.sum(axis=(2, 3)) + 1)
    best = np.argmin(focal + dice, axis=1)
    rows = np.arange(len(best))
    binary = x > 0
    inter_b = (binary & gt[:, None]).sum(axis=(2, 3))
    union_b = (binary | gt[:, None]).sum(axis=(2, 3))
    iou = np.where(union_b == 0, 1.0, inter_b / np.maximum(union_b, 1))
    iou_loss = ((iou_pred.astype(np.float64) - iou) ** 2).mean(axis=1)
    return focal[rows, best], dice[rows, best], iou_loss, best


def test_losses_equal_the_formulas():
    rng = np.random.default_rng(0)
    n, c, h, w = 4, 3, 12, 10
    logits = rng.normal(0, 3, size=(n, c, h, w)).astype(np.float32)
    gt = rng.random((n, h, w)) < 0.4
    gt[3] = False  # an empty ground truth too
    iou_pred = rng.random((n, c)).astype(np.float32)
    loss = SAMMaskLoss()
    focal, dice, iou_loss, best = loss(
        torch.from_numpy(logits), torch.from_numpy(iou_pred), torch.from_numpy(gt)
    )
    ref = _reference(logits, iou_pred, gt)
    np.testing.assert_allclose(focal.double().numpy(), ref[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dice.double().numpy(), ref[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(iou_loss.double().numpy(), ref[2], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(best.numpy(), ref[3])


def test_single_output_and_gradient_only_through_the_kept_output():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(0, 2, size=(2, 3, 8, 8)).astype(np.float32))
    logits.requires_grad_(True)
    gt = torch.from_numpy(rng.random((2, 8, 8)) < 0.5)
    iou_pred = torch.zeros(2, 3)
    focal, dice, _, best = SAMMaskLoss()(logits, iou_pred, gt)
    (focal + dice).sum().backward()
    touched = logits.grad.flatten(2).abs().sum(2) > 0
    expected = torch.zeros(2, 3, dtype=torch.bool)
    expected[torch.arange(2), best] = True
    assert torch.equal(touched, expected)
    # one output: the same formulas, no choice
    one = SAMMaskLoss()(logits[:, :1].detach(), iou_pred[:, :1], gt)
    ref = _reference(logits[:, :1].detach().numpy(), iou_pred[:, :1].numpy(), gt.numpy())
    np.testing.assert_allclose(one[0].double().numpy(), ref[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(one[1].double().numpy(), ref[1], rtol=1e-6, atol=1e-6)
