"""EfficientViT-SAM built from its configs against the official EfficientViT-SAM
(``efficientsam``) on the same random weights: image embeddings, predictor masks and scores,
AMG records (L0, 512 px encoder input), embeddings and a prompt (XL0, 1024 px), and every
published size's weights loading strictly into its config.
"""

import numpy as np
import pytest
import torch

from mmsam.apis import AutomaticMaskGenerator, SAMPredictor
from mmsam.testing import smooth_image
from mmsam.testing.efficientvit_sam_parity import (
    build_efficientvit_sam_pair,
    efficientvit_sam_config_path,
)
from mmsam.testing.parity import (
    PREDICTOR_CASES,
    assert_amg_records_match,
    assert_predictions_match,
)
from mmsam.testing.parity import max_abs_diff as _maxdiff

pytest.importorskip('efficientsam')
from efficientsam.models.efficientvit.sam import (  # noqa: E402
    EfficientViTSamAutomaticMaskGenerator,
    EfficientViTSamPredictor,
)

ATOL = 1e-4


@pytest.fixture(scope='module')
def pair():
    return build_efficientvit_sam_pair('l0', seed=0)


@pytest.fixture(scope='module')
def image():
    return smooth_image(480, 640, seed=7)


@pytest.fixture(scope='module')
def predictors(pair, image):
    official, ours = pair
    ref, mine = EfficientViTSamPredictor(official), SAMPredictor(ours)
    ref.set_image(image)
    mine.set_image(image)
    return ref, mine


def test_config_builds_efficientvit_sam(pair):
    official, ours = pair
    from mmsam.models import SAMEfficientViT

    assert isinstance(ours.backbone, SAMEfficientViT)
    assert ours.image_size == 1024 and ours.backbone.input_size == 512
    assert ours.data_preprocessor.encoder_image_size == 512
    count = sum(p.numel() for p in official.parameters())
    assert sum(p.numel() for p in ours.parameters()) == count


def test_image_embeddings_match(pair, predictors, image):
    _, ours = pair
    ref, mine = predictors
    ref_emb = ref.features
    assert ref_emb.shape == (1, 256, 64, 64) and ref_emb.std() > 0.1
    assert _maxdiff(mine.get_image_embedding(), ref_emb) <= ATOL
    # the encoder input is the official SamResize(512) + SamPad(512) of the image
    x, input_size = ours.data_preprocessor.preprocess_image(
        torch.from_numpy(image).permute(2, 0, 1)
    )
    assert x.shape == (3, 512, 512) and input_size == (768, 1024)
    assert _maxdiff(x[None], official_input(pair[0], image)) <= 1e-5


def official_input(official, image):
    return official.transform(image)[None]


@pytest.mark.parametrize('case', sorted(PREDICTOR_CASES))
@pytest.mark.parametrize('multimask', [True, False])
def test_predictor_matches_official(predictors, case, multimask):
    ref, mine = predictors
    assert_predictions_match(ref, mine, PREDICTOR_CASES[case], multimask, ATOL)


def test_amg_records_match_official(pair, image):
    """Random weights: masks are speckled and nearly alike, so NMS is off (as for SAM)."""
    official, ours = pair
    settings = dict(
        points_per_side=4,
        pred_iou_thresh=0.001,
        stability_score_thresh=0.01,
        stability_score_offset=0.05,
        box_nms_thresh=1.0,
    )
    ref = EfficientViTSamAutomaticMaskGenerator(official, **settings).generate(image)
    got = AutomaticMaskGenerator(ours, **settings).generate(image)
    assert_amg_records_match(ref, got)


def test_xl0_embeddings_and_masks_match_official():
    """XL0 encodes 1024 px inputs (no separate encoder size); a small image keeps it fast."""
    official, ours = build_efficientvit_sam_pair('xl0', seed=1)
    assert ours.backbone.input_size == 1024 == ours.data_preprocessor.encoder_image_size
    image = smooth_image(300, 400, seed=3)
    ref, mine = EfficientViTSamPredictor(official), SAMPredictor(ours)
    ref.set_image(image)
    mine.set_image(image)
    assert ref.features.std() > 0.1
    assert _maxdiff(mine.get_image_embedding(), ref.features) <= ATOL
    for case in ('one_point', 'box'):  # the prompts scaled to the smaller image
        kwargs = dict(PREDICTOR_CASES[case])
        for key in ('point_coords', 'box'):
            if key in kwargs:
                kwargs[key] = np.asarray(kwargs[key]) * 0.6
        assert_predictions_match(ref, mine, kwargs, True, ATOL)


@pytest.mark.parametrize('size', ['l1', 'l2', 'xl1'])
def test_other_sizes_key_match(size):
    """The reference's state dict of every other published size fits its config key by key
    and shape by shape (both built on the meta device; forward parity is shown on L0 and
    XL0, which have every module type)."""
    from efficientsam.sam_model_zoo import create_efficientvit_sam_model

    from mmsam.apis import get_model
    from mmsam.utils.checkpoint_loader import prepare_state_dict

    with torch.device('meta'):
        official = create_efficientvit_sam_model(f'efficientvit-sam-{size}', pretrained=False)
        model = get_model(efficientvit_sam_config_path(size))
    state, info = prepare_state_dict(official.state_dict(), model.state_dict(), size)
    assert info['layout'] == 'official' and not info['ignored']
    own = model.state_dict()
    assert list(state) == list(own) and all(state[k].shape == own[k].shape for k in own)
