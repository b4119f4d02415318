"""Bad prompts and images are handled as documented or refused with a clear ValueError."""

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

import mmsam.registration  # noqa: F401  (registers the modules)
from mmsam.testing import sam_model_cfg


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)  # a module fixture: set up before the per-test seeding
    return MODELS.build(sam_model_cfg('tiny', img_size=256)).eval()


def _run(model, gt, hw=(40, 60)):
    sample = DetDataSample()
    if gt is not None:
        sample.gt_instances = gt
    image = torch.randint(0, 256, (3, *hw), dtype=torch.uint8)
    with torch.no_grad():
        return model.test_step(dict(inputs=[image], data_samples=[sample]))[0]


def test_points_outside_the_image_are_encoded_as_given(model):
    gt = InstanceData(
        points=torch.tensor([[[-10.0, 5.0], [500.0, 900.0]]]), point_labels=torch.tensor([[1, 0]])
    )
    pred = _run(model, gt).pred_instances
    assert pred.masks.shape == (1, 40, 60)
    assert torch.isfinite(pred.scores).all()


def test_box_with_x2_less_than_x1_is_refused(model):
    gt = InstanceData(bboxes=torch.tensor([[30.0, 5.0, 10.0, 20.0]]))
    with pytest.raises(ValueError, match=r'x2 >= x1.*box 0'):
        _run(model, gt)


def test_labels_of_the_wrong_length_are_refused(model):
    with pytest.raises(ValueError, match='point labels must have shape'):
        model.prompt_encoder(
            points=(torch.zeros(1, 3, 2), torch.ones(1, 2, dtype=torch.int)), boxes=None, masks=None
        )


def test_prompt_batches_must_agree(model):
    with pytest.raises(ValueError, match='same batch size'):
        model.prompt_encoder(
            points=(torch.zeros(2, 1, 2), torch.ones(2, 1, dtype=torch.int)),
            boxes=torch.zeros(3, 4),
            masks=None,
        )


def test_mask_input_of_the_wrong_size_is_refused(model):
    with pytest.raises(ValueError, match=r'mask inputs must have shape \(N, 1, 64, 64\)'):
        model.prompt_encoder(points=None, boxes=None, masks=torch.zeros(1, 1, 32, 32))


def test_points_without_labels_are_refused(model):
    gt = InstanceData(points=torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match='point_labels'):
        _run(model, gt)


def test_empty_prompt_list_gives_empty_results(model):
    gt = InstanceData(bboxes=torch.zeros(0, 4))
    pred = _run(model, gt).pred_instances
    assert len(pred) == 0
    assert pred.masks.shape == (0, 40, 60)
    assert pred.multimask_masks.shape == (0, 3, 40, 60)


def test_no_prompt_at_all_gives_one_prediction(model):
    pred = _run(model, None).pred_instances
    assert pred.masks.shape == (1, 40, 60)
    assert pred.multimask_scores.shape == (1, 3)


@pytest.mark.parametrize(
    'image, message',
    [
        (torch.zeros(3, 10, 10, dtype=torch.float32), 'uint8'),
        (torch.zeros(4, 10, 10, dtype=torch.uint8), r'\(3, H, W\)'),
        (torch.zeros(10, 10, dtype=torch.uint8), r'\(3, H, W\)'),
    ],
)
def test_bad_images_are_refused(model, image, message):
    with pytest.raises(ValueError, match=message):
        model.data_preprocessor.preprocess_image(image)


def test_prompts_per_batch_does_not_change_results(model):
    emb = torch.randn(1, 256, 16, 16)
    boxes = torch.tensor([[0.0, 0.0, 100.0, 120.0]]).repeat(5, 1) + torch.arange(5)[:, None] * 10
    with torch.no_grad():
        full = model.predict_prompts(emb, boxes=boxes)
        model.test_cfg['prompts_per_batch'] = 2
        try:
            chunked = model.predict_prompts(emb, boxes=boxes)
        finally:
            model.test_cfg['prompts_per_batch'] = None
    assert torch.allclose(full[0], chunked[0], atol=1e-5)
    assert torch.allclose(full[1], chunked[1], atol=1e-5)


def test_training_without_gt_masks_is_refused_with_a_clear_message(model):
    with pytest.raises(KeyError, match=r'gt_instances\.masks.*LoadAnnotations\(with_mask=True'):
        model.loss(torch.zeros(1, 3, 256, 256), [DetDataSample(metainfo=dict(img_id=0))])
