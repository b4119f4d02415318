"""SAM-HQ against the official ``segment_anything_hq`` on the same random weights: image
embeddings and early features, predictor masks / scores / low-res logits (multimask on and
off, ``hq_token_only`` on and off, the decoder's speed path on and off) and AMG records.

Two pairs: a reduced ViT SAM-HQ (4 layers, global attention at 1 and 3, so the early
feature is not the last layer's; 256 px) and Light HQ-SAM from its config (TinyViT-5M at
1024 px: the reference fixes its token grids to that size).
"""

import warnings

import numpy as np
import pytest

from mmsam.apis import AutomaticMaskGenerator, SAMPredictor
from mmsam.testing import smooth_image

pytest.importorskip('timm')
pytest.importorskip('segment_anything_hq')
with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # timm's deprecation and registry warnings
    from segment_anything_hq import SamAutomaticMaskGenerator, SamPredictor

from mmsam.testing.parity import assert_amg_records_match  # noqa: E402
from mmsam.testing.parity import max_abs_diff as _maxdiff  # noqa: E402
from mmsam.testing.sam_hq_parity import build_light_hq_sam_pair, build_sam_hq_pair  # noqa: E402

ATOL = 1e-4


@pytest.fixture(scope='module')
def vit_pair():
    return build_sam_hq_pair('small', img_size=256, window_size=4, seed=0)


@pytest.fixture(scope='module')
def light_pair():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return build_light_hq_sam_pair(seed=0)


def _predictors(pair, image):
    official, ours = pair
    ref, mine = SamPredictor(official), SAMPredictor(ours)
    ref.set_image(image)
    mine.set_image(image)
    return ref, mine


@pytest.fixture(scope='module')
def vit_predictors(vit_pair):
    return _predictors(vit_pair, smooth_image(120, 160, seed=7))


@pytest.fixture(scope='module')
def light_predictors(light_pair):
    return _predictors(light_pair, smooth_image(480, 640, seed=7))


def _check_features(ref, mine):
    """mmsam's image features are the embedding followed by the early feature."""
    emb, interm = ref.features, ref.interm_features[0].permute(0, 3, 1, 2)
    assert emb.std() > 0.1 and interm.std() > 0.1
    features = mine.get_image_embedding()
    assert features.shape == (1, 256 + interm.shape[1], *emb.shape[2:])
    assert _maxdiff(features[:, :256], emb) <= ATOL
    assert _maxdiff(features[:, 256:], interm) <= ATOL


def test_vit_features_match(vit_predictors):
    ref, mine = vit_predictors
    assert ref.interm_features[0].shape == (1, 16, 16, 128)
    _check_features(ref, mine)


def test_light_hq_sam_features_match(light_predictors):
    """(The fused encoder path against the plain one, early feature included:
    tests/apis/test_sam_hq_apis.py.)"""
    ref, mine = light_predictors
    assert ref.interm_features[0].shape == (1, 64, 64, 160)
    _check_features(ref, mine)


CASES = {
    'one_point': dict(point_coords=np.array([[60.0, 50.0]]), point_labels=np.array([1])),
    'box': dict(box=np.array([20, 15, 110, 100])),
    'box_point': dict(
        point_coords=np.array([[60.0, 50.0]]), point_labels=np.array([1]), box=[20, 15, 110, 100]
    ),
}


def _check_predict(ref, mine, kwargs, multimask, hq_token_only):
    ref_kwargs = {k: np.asarray(v) for k, v in kwargs.items()}
    opts = dict(multimask_output=multimask, hq_token_only=hq_token_only)
    ref_masks, ref_scores, ref_low = ref.predict(**ref_kwargs, **opts)
    ref_logits = ref.predict(**ref_kwargs, **opts, return_logits=True)[0]
    masks, scores, low = mine.predict(**kwargs, **opts)
    assert masks.shape == ref_masks.shape == (1, *ref.original_size)  # one mask, as official
    assert _maxdiff(scores, ref_scores) <= ATOL
    assert _maxdiff(low, ref_low) <= ATOL
    differ = masks != ref_masks
    # a pixel may flip only where the reference logit sits within the tolerance
    assert np.abs(ref_logits[differ]).max(initial=0.0) <= ATOL
    assert 0 < ref_masks.sum() < ref_masks.size
    return low


@pytest.mark.parametrize('fast_path', [True, False])
@pytest.mark.parametrize('case', sorted(CASES))
@pytest.mark.parametrize('multimask', [True, False])
def test_vit_predictor_matches_official(vit_pair, vit_predictors, case, multimask, fast_path):
    ref, mine = vit_predictors
    decoder = vit_pair[1].mask_decoder
    decoder.fast_path = fast_path
    try:
        fused = _check_predict(ref, mine, CASES[case], multimask, hq_token_only=False)
        hq_only = _check_predict(ref, mine, CASES[case], multimask, hq_token_only=True)
        # the decoder's own setting is used when the call gives none
        decoder.hq_token_only = True
        again = mine.predict(**CASES[case], multimask_output=multimask)[2]
    finally:
        decoder.fast_path, decoder.hq_token_only = True, False
    assert _maxdiff(fused, hq_only) > 1e-2  # the two outputs are not the same logits
    assert _maxdiff(again, hq_only) == 0.0


LIGHT_CASES = {
    'one_point': dict(point_coords=np.array([[260.0, 200.0]]), point_labels=np.array([1])),
    'box': dict(box=np.array([100, 80, 450, 400])),
}


@pytest.mark.parametrize('case', sorted(LIGHT_CASES))
@pytest.mark.parametrize('hq_token_only', [True, False])
def test_light_hq_sam_predictor_matches_official(light_predictors, case, hq_token_only):
    ref, mine = light_predictors
    # the SAM paper's protocol: three SAM outputs for one point, the single one for a box
    _check_predict(ref, mine, LIGHT_CASES[case], case == 'one_point', hq_token_only)


AMG_SETTINGS = dict(
    points_per_side=4,
    pred_iou_thresh=0.001,
    stability_score_thresh=0.01,
    stability_score_offset=0.05,
    box_nms_thresh=1.0,
)


def test_vit_amg_records_match_official(vit_pair):
    """Random weights: masks are speckled and nearly alike, so NMS is off (as for SAM).

    (Light HQ-SAM's AMG runs the same decoder and generator code on its encoder's
    features, which the tests above compare; it is left out to keep the suite short.)
    """
    official, ours = vit_pair
    image = smooth_image(120, 160, seed=7)
    ref = SamAutomaticMaskGenerator(official, **AMG_SETTINGS).generate(image)
    got = AutomaticMaskGenerator(ours, **AMG_SETTINGS).generate(image)
    assert_amg_records_match(ref, got)
