"""The SAM paper's prompt protocol in ``SAM.predict`` (``test_cfg['multimask_output']``).

The paper (and the official ``SamPredictor`` documentation) returns three masks only for
an ambiguous prompt, a single point; a box, a box with points and two or more points get
the single output token (``SamPredictor.predict(..., multimask_output=False)``). The
expected values come from the official predictor, prompt by prompt, on the same weights;
which prompts are ambiguous is written out in each case, not computed.
"""

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

import mmsam.models  # noqa: F401  (registers SAM)
from mmsam.testing import build_sam_pair, sam_model_cfg, smooth_image

segment_anything = pytest.importorskip('segment_anything')
from segment_anything import SamPredictor  # noqa: E402

ATOL = 1e-4
HW = (120, 160)


@pytest.fixture(scope='module')
def pair():
    official, ours = build_sam_pair('tiny', img_size=256, window_size=4, seed=0)
    ours.data_preprocessor.bgr_to_rgb = False
    return official, ours


@pytest.fixture(scope='module')
def image():
    return smooth_image(*HW, seed=5)


@pytest.fixture(scope='module')
def predictor(pair, image):
    official, _ = pair
    predictor = SamPredictor(official)
    predictor.set_image(image)
    return predictor


def _ours(model, image, mode, **prompts):
    """``pred_instances`` of mmsam's ``predict`` with ``test_cfg['multimask_output'] = mode``."""
    gt = InstanceData(**{k: torch.as_tensor(v) for k, v in prompts.items()})
    sample = DetDataSample()
    sample.gt_instances = gt
    data = dict(inputs=[torch.from_numpy(image).permute(2, 0, 1)], data_samples=[sample])
    saved = model.test_cfg['multimask_output']
    model.test_cfg['multimask_output'] = mode
    try:
        with torch.no_grad():
            return model.test_step(data)[0].pred_instances
    finally:
        model.test_cfg['multimask_output'] = saved


def _official_row(predictor, multimask, points=None, labels=None, box=None, mask_input=None):
    """The official predictor on one prompt (original frame), labels -1 kept as padding."""
    size = predictor.original_size
    kwargs = dict(point_coords=None, point_labels=None, boxes=None, mask_input=mask_input)
    if points is not None:
        coords = predictor.transform.apply_coords(np.asarray(points, dtype=np.float64), size)
        kwargs['point_coords'] = torch.as_tensor(coords, dtype=torch.float)[None]
        kwargs['point_labels'] = torch.as_tensor(labels, dtype=torch.int)[None]
    if box is not None:
        boxes = predictor.transform.apply_boxes(np.asarray(box, dtype=np.float64)[None], size)
        kwargs['boxes'] = torch.as_tensor(boxes, dtype=torch.float)
    with torch.no_grad():
        logits, iou, low_res = predictor.predict_torch(
            **kwargs, multimask_output=multimask, return_logits=True
        )
    return logits[0], iou[0], low_res[0]


def _assert_row(pred, i, ref, num_out):
    """Row ``i`` of ``pred`` equals the official outputs ``ref``, repeated if single."""
    logits, iou, low_res = ref
    if len(iou) == 1:  # the single output, repeated C times
        logits, iou, low_res = (t.expand(num_out, *t.shape[1:]) for t in (logits, iou, low_res))
    assert pred.multimask_masks.shape[1] == num_out
    assert (pred.mask_logits[i] - low_res).abs().max() <= ATOL
    assert (pred.multimask_scores[i] - iou).abs().max() <= ATOL
    near = logits.abs() <= ATOL  # pixels at the threshold may flip with float rounding
    assert not ((pred.multimask_masks[i] != (logits > 0)) & ~near).any()
    best = int(iou.argmax())
    assert torch.equal(pred.masks[i], pred.multimask_masks[i, best])
    assert abs(float(pred.scores[i]) - float(iou[best])) <= ATOL


def test_default_is_the_papers_protocol():
    model = MODELS.build(sam_model_cfg('tiny', img_size=64, window_size=4))
    assert model.test_cfg['multimask_output'] == 'auto'
    assert model.num_mask_outputs == 3


def test_single_points_and_several_points_in_one_sample(pair, image, predictor):
    """Rows of one sample with one point (padded with -1) and with two points."""
    _, ours = pair
    points = np.array(
        [[[40.0, 30.0], [0.0, 0.0]], [[90.0, 60.0], [20.0, 100.0]], [[130.0, 80.0], [5.0, 5.0]]]
    )
    labels = np.array([[1, -1], [1, 0], [1, -1]])
    ambiguous = [True, False, True]  # one real point, two points, one real point
    pred = _ours(ours, image, 'auto', points=points.astype(np.float32), point_labels=labels)
    assert pred.multimask_output.tolist() == ambiguous
    assert pred.multimask_masks.shape == (3, 3, *HW)
    assert pred.mask_logits.shape == (3, 3, 64, 64)
    for i, multimask in enumerate(ambiguous):
        ref = _official_row(predictor, multimask, points[i], labels[i])
        _assert_row(pred, i, ref, 3)
    # the single-output row differs from the best of its three multimask outputs
    forced = _ours(ours, image, True, points=points.astype(np.float32), point_labels=labels)
    assert (forced.mask_logits[1] - pred.mask_logits[1]).abs().max() > 0.01


def test_a_point_with_a_mask_input_gets_the_single_output(pair, image, predictor):
    """One click plus the previous logits: two prompts, so the single output."""
    _, ours = pair
    points = np.array([[[40.0, 30.0]], [[130.0, 80.0]]])
    labels = np.array([[1], [1]])
    mask_inputs = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(3)) * 4
    pred = _ours(
        ours,
        image,
        'auto',
        points=points.astype(np.float32),
        point_labels=labels,
        mask_inputs=mask_inputs,
    )
    assert pred.multimask_output.tolist() == [False, False]
    for i in range(2):
        ref = _official_row(
            predictor, False, points[i], labels[i], mask_input=mask_inputs[i : i + 1]
        )
        _assert_row(pred, i, ref, 3)


@pytest.mark.parametrize('with_points', [False, True], ids=['box', 'box_and_points'])
def test_boxes_get_the_single_output(pair, image, predictor, with_points):
    _, ours = pair
    boxes = np.array([[20.0, 10.0, 100.0, 90.0], [60.0, 40.0, 150.0, 115.0]])
    prompts = dict(bboxes=boxes.astype(np.float32))
    points = labels = None
    if with_points:
        points = np.array([[[50.0, 50.0]], [[100.0, 80.0]]])
        labels = np.array([[1], [1]])
        prompts.update(points=points.astype(np.float32), point_labels=labels)
    pred = _ours(ours, image, 'auto', **prompts)
    assert pred.multimask_output.tolist() == [False, False]
    assert pred.multimask_masks.shape == (2, 3, *HW)
    for i in range(2):
        ref = _official_row(
            predictor,
            False,
            None if points is None else points[i],
            None if labels is None else labels[i],
            boxes[i],
        )
        _assert_row(pred, i, ref, 3)
        # repeated: the oracle over the C outputs is the single output
        assert torch.equal(pred.multimask_masks[i, 1], pred.multimask_masks[i, 0])


def test_forced_multimask_for_boxes(pair, image, predictor):
    """``multimask_output=True``: the best of three by predicted IoU, as before."""
    _, ours = pair
    boxes = np.array([[20.0, 10.0, 100.0, 90.0], [60.0, 40.0, 150.0, 115.0]])
    pred = _ours(ours, image, True, bboxes=boxes.astype(np.float32))
    assert pred.multimask_output.tolist() == [True, True]
    for i in range(2):
        _assert_row(pred, i, _official_row(predictor, True, box=boxes[i]), 3)


def test_forced_single_output_for_one_point(pair, image, predictor):
    """``multimask_output=False``: ``C = 1``, the official single output token."""
    _, ours = pair
    points = np.array([[[40.0, 30.0]], [[130.0, 80.0]]])
    labels = np.array([[1], [1]])
    pred = _ours(ours, image, False, points=points.astype(np.float32), point_labels=labels)
    assert pred.multimask_output.tolist() == [False, False]
    assert pred.multimask_masks.shape == (2, 1, *HW)
    assert pred.multimask_scores.shape == (2, 1) and pred.mask_logits.shape == (2, 1, 64, 64)
    for i in range(2):
        _assert_row(pred, i, _official_row(predictor, False, points[i], labels[i]), 1)


def test_empty_prompts_keep_the_shapes(pair, image):
    _, ours = pair
    for mode, c in (('auto', 3), (True, 3), (False, 1)):
        pred = _ours(ours, image, mode, bboxes=np.zeros((0, 4), np.float32))
        assert pred.multimask_masks.shape == (0, c, *HW)
        assert pred.multimask_output.shape == (0,)


@pytest.mark.parametrize('value', ['yes', None, 1, 'multi'])
def test_bad_values_are_refused(pair, image, value):
    _, ours = pair
    cfg = sam_model_cfg('tiny', img_size=64, window_size=4)
    with pytest.raises(ValueError, match=r"test_cfg\['multimask_output'\] must be 'auto'"):
        MODELS.build(dict(cfg, test_cfg=dict(multimask_output=value)))
    with pytest.raises(ValueError, match=r"must be 'auto'.*got"):
        _ours(ours, image, value, bboxes=np.array([[1.0, 2.0, 30.0, 40.0]], np.float32))
