"""The prompt rules in one place: prepare_prompts, check_prompt_batch, check_box_order;
and select_best_candidate (SAM's best-of-C rule)."""

import numpy as np
import pytest
import torch

from mmsam.structures import (
    check_box_order,
    check_prompt_batch,
    prepare_prompts,
    prompt_batch_size,
    select_best_candidate,
)

segment_anything = pytest.importorskip('segment_anything')

SIZES = dict(original_size=(60, 80), image_size=64, mask_input_size=(16, 16))


def test_single_prompt_is_mapped_like_the_official_transform():
    from segment_anything.utils.transforms import ResizeLongestSide

    ref = ResizeLongestSide(64)
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 60, (3, 2))
    box = np.array([5.0, 7.0, 50.0, 40.0])
    mask = rng.standard_normal((1, 16, 16))
    out = prepare_prompts(points, [1, 0, 1], box, mask, **SIZES)
    assert not out.batched and out.num_prompts == 1
    np.testing.assert_allclose(out.point_coords[0], ref.apply_coords(points, (60, 80)))
    np.testing.assert_array_equal(out.point_labels, [[1, 0, 1]])
    np.testing.assert_allclose(out.boxes, ref.apply_boxes(box[None], (60, 80)))
    np.testing.assert_array_equal(out.mask_inputs, mask[None])


def test_batches_repeat_single_prompts_and_take_tensors():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0]])
    out = prepare_prompts([[1, 2]], [1], boxes, None, **SIZES)
    assert out.batched and out.num_prompts == 2
    assert out.point_coords.shape == (2, 1, 2) and out.point_labels.shape == (2, 1)
    np.testing.assert_array_equal(out.point_coords[0], out.point_coords[1])
    assert out.boxes.shape == (2, 4) and out.mask_inputs is None
    empty = prepare_prompts(box=np.zeros((0, 4)), **SIZES)
    assert empty.batched and empty.num_prompts == 0 and empty.boxes.shape == (0, 4)


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(point_coords=[[1, 2]]), 'must be given together: point_coords was given without'),
        (dict(point_labels=[1]), 'point_labels was given without point_coords'),
        (dict(point_coords=[1, 2], point_labels=[1]), r'\(P, 2\) or \(N, P, 2\)'),
        (dict(point_coords=[[1, 2]], point_labels=[1, 1]), r'point_labels must have shape \(1,\)'),
        (dict(point_coords=[[1, 2]], point_labels=[0.5]), 'point_labels must be integers'),
        (dict(point_coords=[[np.inf, 2]], point_labels=[1]), 'point_coords must hold finite'),
        (dict(box=[1, 2, 3]), r'box must have shape \(4,\) or \(N, 4\)'),
        (dict(box=[[0, 0, 5, 5], [9, 0, 3, 5]]), r'x2 >= x1 and y2 >= y1; box 1 is \[9.0'),
        (dict(mask_input=np.zeros((2, 16, 16))), r'mask_input must have shape \(1, 16, 16\)'),
        (dict(box=np.zeros((2, 4)), mask_input=np.zeros((3, 1, 16, 16))), 'same N'),
    ],
)
def test_bad_prompts_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prepare_prompts(**kwargs, **SIZES)


def test_one_prompt_per_call_and_binary_labels():
    one = dict(allow_batch=False, binary_labels=True, **SIZES)
    with pytest.raises(ValueError, match=r'\(P, 2\) as \(x, y\) pixels \(one prompt per call\)'):
        prepare_prompts([[[1, 2]]], [[1]], **one)
    with pytest.raises(ValueError, match=r'box must have shape \(4,\) as XYXY \(one prompt\)'):
        prepare_prompts(box=np.zeros((2, 4)), **one)
    with pytest.raises(ValueError, match='point_labels must be 1 .foreground. or 0'):
        prepare_prompts([[1, 2]], [-1], **one)
    out = prepare_prompts(mask_input=np.ones((1, 1, 16, 16)), **one)
    assert not out.batched and out.mask_inputs.shape == (1, 1, 16, 16)


def test_box_order_rule_on_numpy_and_torch():
    check_box_order(np.array([[0.0, 0.0, 0.0, 0.0]]))  # a point-sized box is fine
    for boxes in (
        np.array([[0, 0, 1, 1], [0, 5, 1, 4]]),
        torch.tensor([[0, 0, 1, 1], [0, 5, 1, 4]]),
    ):
        with pytest.raises(ValueError, match=r'gt must be XYXY .*box 1 is \[0, 5, 1, 4\]'):
            check_box_order(boxes, 'gt')


def test_model_prompt_batch_shapes():
    points = (torch.zeros(2, 3, 2), torch.ones(2, 3))
    assert check_prompt_batch(points, torch.zeros(2, 4), torch.zeros(2, 1, 16, 16), (16, 16)) == 2
    assert check_prompt_batch(None, None, None, (16, 16)) == 1
    assert prompt_batch_size(None, torch.zeros(0, 4), None) == 0
    with pytest.raises(ValueError, match=r'point coords must have shape \(N, P, 2\)'):
        check_prompt_batch((torch.zeros(3, 2), torch.ones(3)), None, None, (16, 16))
    with pytest.raises(ValueError, match=r'boxes must have shape \(N, 4\)'):
        check_prompt_batch(None, torch.zeros(4), None, (16, 16))
    with pytest.raises(ValueError, match='same batch size N, got points=2, boxes=3'):
        check_prompt_batch(points, torch.zeros(3, 4), None, (16, 16))


def test_best_candidate_by_predicted_iou():
    rng = np.random.default_rng(0)
    scores = rng.random((5, 3)).astype(np.float32)
    scores[4] = [0.5, 0.5, 0.1]  # a tie: the first wins, as argmax in the official code
    masks = rng.random((5, 3, 4, 6)) > 0.5
    best, best_scores, best_masks = select_best_candidate(scores, masks)
    for i in range(5):
        j = max(range(3), key=lambda k: (scores[i, k], -k))
        assert best[i] == j and best_scores[i] == scores[i, j]
        np.testing.assert_array_equal(best_masks[i], masks[i, j])
    t_best, t_scores, t_masks = select_best_candidate(
        torch.from_numpy(scores), torch.from_numpy(masks)
    )
    np.testing.assert_array_equal(t_best.numpy(), best)
    np.testing.assert_array_equal(t_masks.numpy(), best_masks)
    with pytest.raises(ValueError, match=r'\(N, C\)'):
        select_best_candidate(scores[0])
