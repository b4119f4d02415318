"""The prompt simulator: points in the right regions, box noise within its bounds."""

import torch

from mmsam.models.task_modules import (
    PromptSimulator,
    noisy_boxes,
    sample_error_points,
    sample_points_in_masks,
)
from mmsam.models.task_modules.prompt_simulation import FIRST, MASK_ONLY, POINT


def _random_masks(n, h, w, p, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n, h, w), generator=gen) < p


def test_points_lie_in_the_error_regions_with_their_labels():
    gt = _random_masks(64, 20, 24, 0.5, seed=0)
    pred = _random_masks(64, 20, 24, 0.5, seed=1)
    pred[0] = gt[0]  # an exact prediction
    pred[1] = gt[1] | True  # only false positives
    pred[2] = torch.zeros_like(gt[2])  # only false negatives (gt[2] non-empty)
    gen = torch.Generator().manual_seed(2)
    coords, labels = sample_error_points(pred, gt, gen)
    assert labels[0] == -1
    assert labels[1] == 0 and labels[2] == 1
    for i in range(1, 64):
        x, y = int(coords[i, 0]), int(coords[i, 1])
        assert coords[i, 0] == x and coords[i, 1] == y  # pixel indices
        fn = gt[i, y, x] and not pred[i, y, x]
        fp = pred[i, y, x] and not gt[i, y, x]
        assert fn or fp, f'instance {i}: point {(x, y)} is not an error pixel'
        assert labels[i] == (1 if fn else 0)


def test_error_points_are_uniform_over_the_error_region():
    gt = torch.zeros(1, 6, 6, dtype=torch.bool)
    gt[0, :3] = True
    pred = torch.zeros_like(gt)
    pred[0, :, :1] = True  # error: 15 false negatives (rows 0-2, cols 1-5) + 3 false positives
    error = (gt ^ pred)[0]
    counts = torch.zeros(6, 6)
    gen = torch.Generator().manual_seed(0)
    for _ in range(1800):
        coords, _ = sample_error_points(pred, gt, gen)
        counts[int(coords[0, 1]), int(coords[0, 0])] += 1
    assert (counts[~error] == 0).all()
    hits = counts[error]
    assert hits.min() > 50 and hits.max() < 150  # 100 expected for each of the 18 pixels


def test_points_inside_masks_and_empty_masks_flagged():
    masks = _random_masks(32, 16, 16, 0.1, seed=3)
    masks[5] = False
    coords, valid = sample_points_in_masks(masks, torch.Generator().manual_seed(0))
    assert not valid[5] and valid.sum() == 31
    for i in torch.nonzero(valid).flatten().tolist():
        assert masks[i, int(coords[i, 1]), int(coords[i, 0])]


def test_box_noise_is_bounded_and_scaled_by_the_side():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 900.0, 500.0]]).repeat(500, 1)
    out = noisy_boxes(boxes, 0.1, 20.0, torch.Generator().manual_seed(0))
    delta = out - boxes
    assert delta.abs().max() <= 20.0 + 1e-4
    small = delta[0::2]
    # std 10% of the side: 2 px along x (side 20), 4 px along y (side 40), unclipped
    assert 1.7 < small[:, 0].std() < 2.3 and 3.4 < small[:, 1].std() < 4.6
    large = delta[1::2]
    assert (large[:, 0].abs() == 20.0).float().mean() > 0.5  # std 90 px, clipped at 20
    clipped = noisy_boxes(boxes, 0.1, 20.0, torch.Generator().manual_seed(0), bounds=(100, 50))
    assert (clipped[:, 0::2] <= 100).all() and (clipped[:, 1::2] <= 50).all()
    assert (clipped[:, 2] >= clipped[:, 0]).all() and (clipped[:, 3] >= clipped[:, 1]).all()


def test_round_plan_follows_the_paper():
    sim = PromptSimulator(num_point_rounds=8, num_mask_only_rounds=2)
    for seed in range(20):
        plan = sim.round_plan(torch.Generator().manual_seed(seed))
        assert len(plan) == 11 and plan[0] == FIRST and plan[-1] == MASK_ONLY
        assert plan.count(POINT) == 8 and plan.count(MASK_ONLY) == 2
    assert PromptSimulator(num_point_rounds=0, num_mask_only_rounds=0).round_plan() == [FIRST]


def test_first_prompts_mix_boxes_and_points_inside_the_masks():
    masks = _random_masks(200, 12, 12, 0.3, seed=4)
    boxes = torch.tensor([[0.0, 0.0, 12.0, 12.0]]).repeat(200, 1)
    sim = PromptSimulator(box_prob=0.5)
    use_box, noisy, points = sim.first_prompts(masks, boxes, torch.Generator().manual_seed(0))
    assert 60 < int(use_box.sum()) < 140
    for i in range(200):
        assert masks[i, int(points[i, 1]), int(points[i, 0])]
    assert noisy.shape == (200, 4)
