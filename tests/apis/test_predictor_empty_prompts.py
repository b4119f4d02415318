"""Zero prompts (a detector that found nothing) give empty results of the right shapes."""

import numpy as np
import pytest
import torch

from mmsam.apis import SAMPredictor
from mmsam.testing.parity import randomize_parameters, sam_model_cfg


@pytest.fixture(scope='module')
def predictor():
    from mmdet.registry import MODELS

    import mmsam.registration  # noqa: F401  (registers the modules)

    torch.manual_seed(0)
    model = MODELS.build(sam_model_cfg('tiny', img_size=256, window_size=4)).eval()
    randomize_parameters(model, seed=3)
    pred = SAMPredictor(model)
    pred.set_image(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    return pred


@pytest.mark.parametrize('multimask', [True, False])
@pytest.mark.parametrize('logits', [True, False])
def test_no_boxes(predictor, multimask, logits):
    c = 3 if multimask else 1
    e = predictor.mask_input_size
    masks, scores, low_res = predictor.predict(
        box=np.zeros((0, 4)), multimask_output=multimask, return_logits=logits
    )
    assert masks.shape == (0, c, 40, 50) and scores.shape == (0, c)
    assert low_res.shape == (0, c, *e)
    assert masks.dtype == (np.float32 if logits else bool)
    assert scores.dtype == low_res.dtype == np.float32
    # the dtypes and trailing shapes are those of a non-empty call
    ref = predictor.predict(box=np.array([[1, 2, 30, 20]]), multimask_output=multimask)
    assert ref[0].shape[1:] == masks.shape[1:] and ref[1].dtype == scores.dtype


def test_no_points_and_no_masks(predictor):
    masks, scores, low_res = predictor.predict(
        point_coords=np.zeros((0, 2, 2)), point_labels=np.zeros((0, 2)), multimask_output=False
    )
    assert masks.shape == (0, 1, 40, 50) and scores.shape == (0, 1)
    e = predictor.mask_input_size
    masks, _, low_res = predictor.predict(mask_input=np.zeros((0, 1, *e)))
    assert masks.shape == (0, 3, 40, 50) and low_res.shape == (0, 3, *e)


def test_predict_torch_with_no_boxes(predictor):
    masks, scores, low_res = predictor.predict_torch(
        None, None, boxes=torch.zeros((0, 4)), multimask_output=True
    )
    assert masks.shape == (0, 3, 40, 50) and masks.dtype == torch.bool
    assert scores.shape == (0, 3) and low_res.shape == (0, 3, *predictor.mask_input_size)
