"""MobileSAM built from its config against the official MobileSAM (``mobile_sam``) on the same
random weights: image embeddings, predictor masks and scores, AMG records.

The reference TinyViT fixes its token grids to a 1024 input, so these run at full size
(TinyViT-5M is small: a few seconds for all image encodings on an idle machine).
"""

import warnings

import numpy as np
import pytest
import torch

from mmsam.apis import AutomaticMaskGenerator, SAMPredictor
from mmsam.testing import smooth_image
from mmsam.testing.mobile_sam_parity import build_mobile_sam_pair
from mmsam.testing.parity import assert_amg_records_match
from mmsam.testing.parity import max_abs_diff as _maxdiff

pytest.importorskip('timm')
mobile_sam = pytest.importorskip('mobile_sam')
from mobile_sam import SamAutomaticMaskGenerator, SamPredictor  # noqa: E402

ATOL = 1e-4


@pytest.fixture(scope='module')
def pair():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return build_mobile_sam_pair(seed=0)


@pytest.fixture(scope='module')
def image():
    return smooth_image(480, 640, seed=7)


@pytest.fixture(scope='module')
def predictors(pair, image):
    official, ours = pair
    ref, mine = SamPredictor(official), SAMPredictor(ours)
    ref.set_image(image)
    mine.set_image(image)
    return ref, mine


def test_config_builds_mobile_sam(pair):
    _, ours = pair
    from mmsam.models import SAMTinyViT

    assert isinstance(ours.backbone, SAMTinyViT) and ours.backbone.fused
    assert sum(p.numel() for p in ours.backbone.parameters()) == 5_743_892
    assert ours.image_size == 1024


def test_image_embeddings_match_fused_and_plain(pair, predictors, image):
    """Fused (default) and plain encoder paths, each within 1e-4 of the reference."""
    _, ours = pair
    ref, mine = predictors
    ref_emb = ref.get_image_embedding()
    assert ref_emb.shape == (1, 256, 64, 64) and ref_emb.std() > 0.1
    assert _maxdiff(mine.get_image_embedding(), ref_emb) <= ATOL
    x, _ = ours.data_preprocessor.preprocess_image(torch.from_numpy(image).permute(2, 0, 1))
    ours.backbone.fused = False
    try:
        with torch.no_grad():
            plain = ours.extract_feat(x[None])[0]
    finally:
        ours.backbone.fused = True
    assert _maxdiff(plain, ref_emb) <= 1e-5  # the same modules, the same op order


CASES = {
    'one_point': dict(point_coords=np.array([[260.0, 200.0]]), point_labels=np.array([1])),
    'points': dict(point_coords=np.array([[260.0, 200.0], [500, 400]]), point_labels=[1, 0]),
    'box': dict(box=np.array([100, 80, 450, 400])),
    'box_point': dict(
        point_coords=np.array([[260.0, 200.0]]), point_labels=np.array([1]), box=[100, 80, 450, 400]
    ),
}


@pytest.mark.parametrize('case', sorted(CASES))
@pytest.mark.parametrize('multimask', [True, False])
def test_predictor_matches_official(predictors, case, multimask):
    ref, mine = predictors
    kwargs = CASES[case]
    ref_kwargs = {k: np.asarray(v) for k, v in kwargs.items()}
    ref_masks, ref_scores, ref_low = ref.predict(**ref_kwargs, multimask_output=multimask)
    ref_logits = ref.predict(**ref_kwargs, multimask_output=multimask, return_logits=True)[0]
    masks, scores, low = mine.predict(**kwargs, multimask_output=multimask)
    assert masks.shape == ref_masks.shape == ((3 if multimask else 1), 480, 640)
    assert _maxdiff(scores, ref_scores) <= ATOL
    assert _maxdiff(low, ref_low) <= ATOL
    differ = masks != ref_masks
    # a pixel may flip only where the reference logit sits within the tolerance
    assert np.abs(ref_logits[differ]).max(initial=0.0) <= ATOL
    assert 0 < ref_masks.sum() < ref_masks.size


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
    ref = SamAutomaticMaskGenerator(official, **settings).generate(image)
    got = AutomaticMaskGenerator(ours, **settings).generate(image)
    assert_amg_records_match(ref, got)
