"""Every API with MobileSAM, on a seeded 256-px MobileSAM built from its config.

``SAMTinyViT`` runs at any multiple of 16 (the reference only at 1024 px, so the parity
with it is in ``tests/models/test_mobile_sam_parity.py``); here the APIs run on the same
model class with a 256-px input, and each result is checked against another path:
the fused encoder against the plain one, bf16 against fp32, ONNX against PyTorch, the
command line and ``tools/test.py`` against the predictor.
"""

import os

import numpy as np
import pytest
import torch

import mmsam
from mmsam.apis import AutomaticMaskGenerator, SAMPredictor
from mmsam.testing import smooth_image
from mmsam.testing.eval_runs import (
    REPO,
    assert_box_prompt_eval_runs,
    assert_cli_segment_matches_predictor,
    input_size_overrides,
)
from mmsam.testing.mobile_sam_parity import mobile_sam_config_path, randomize_mobile_sam
from mmsam.utils.checkpoint_io import save_checkpoint

IMG = 256
NAME = 'mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px'
SMALL = input_size_overrides(IMG)


def _small_mobile_sam(seed=0):
    torch.manual_seed(seed)
    model = mmsam.get_model(mobile_sam_config_path(), **SMALL)
    randomize_mobile_sam(model, seed=seed)
    return model.eval()


@pytest.fixture(scope='module')
def model():
    return _small_mobile_sam()


@pytest.fixture(scope='module')
def image():
    return smooth_image(150, 220, seed=4)


def _inputs(seed=0):
    return torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def test_fused_path_equals_plain_path(model):
    x = _inputs()
    with torch.no_grad():
        fused = model.extract_feat(x)[0]
        plain = model.backbone.plain_forward(x)
        with torch.enable_grad():  # autograd on: the fused path without oneDNN kernels
            fused_grad = model.backbone(x)[0]
    assert fused.shape == (1, 256, IMG // 16, IMG // 16) and plain.std() > 0.1
    assert (fused - plain).abs().max() <= 1e-4
    assert (fused_grad - plain).abs().max() <= 1e-4


def test_banded_rows_join_into_the_whole_map(model, monkeypatch):
    """With a tiny band budget every large map of the fused path (MBConv hidden maps,
    the stride-2 patch merging, the first attention stage's MLP) is built in several
    bands of rows, the last one short; the result is the unbanded one."""
    from mmsam.models.backbones import sam_tinyvit_fused

    x = torch.cat([_inputs(3), _inputs(4)])  # a batch of two: bands span the batch
    with torch.no_grad():
        whole = model.extract_feat(x)[0]
        plain = model.backbone.plain_forward(x)
        row = 2 * 256 * (IMG // 4) * 4  # bytes of one row of an MBConv hidden map (B=2)
        monkeypatch.setattr(sam_tinyvit_fused, 'BAND_BYTES', 5 * row)
        calls = []
        join = sam_tinyvit_fused.join_bands
        monkeypatch.setattr(
            sam_tinyvit_fused, 'join_bands', lambda ts, dim: calls.append(len(ts)) or join(ts, dim)
        )
        banded = model.extract_feat(x)[0]
    # bands of an MBConv hidden map row (5 rows) or less: 2 MBConv blocks (64 rows in 13
    # bands), the 1st merging (32 output rows in 7), stage 1's 2 MLPs (32 rows in 7), the 2nd
    # merging (16 rows in 2), stage 2's 6 MLPs (16 in 2) and stage 3's 2 (16 in 4)
    assert sorted(calls) == [2] * 7 + [4] * 2 + [7] * 3 + [13] * 2
    assert (banded - whole).abs().max() <= 1e-5
    assert (banded - plain).abs().max() <= 1e-4 and plain.std() > 0.1


def test_attention_bias_follows_loaded_weights(model):
    """mmpretrain's LeAttention caches its bias table at .eval(); SAMTinyViT refreshes it."""
    other = _small_mobile_sam(seed=2)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    x = _inputs(1)
    try:
        model.load_state_dict(other.state_dict())  # into a model already in eval mode
        with torch.no_grad():
            assert torch.equal(model.backbone.plain_forward(x), other.backbone.plain_forward(x))
    finally:
        model.load_state_dict(own)


def test_bf16_autocast(model):
    x = _inputs(2)
    with torch.no_grad():
        ref = model.extract_feat(x)[0]
        model.set_speed_options(autocast_dtype='bfloat16')
        try:
            out = model.extract_feat(x)[0]
        finally:
            model.set_speed_options(autocast_dtype=None)
    assert out.dtype == torch.float32
    rel = ((out - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.05, rel


def test_predictor_and_amg(model, image):
    predictor = SAMPredictor(model)
    predictor.set_image(image)
    masks, scores, low = predictor.predict(point_coords=np.array([[100.0, 70.0]]), point_labels=[1])
    assert masks.shape == (3, 150, 220) and scores.shape == (3,) and low.shape == (3, 64, 64)
    records = AutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    ).generate(image)
    assert records and all(r['segmentation'].shape == (150, 220) for r in records)
    # each AMG mask is the predictor's mask for its point (the best of three by score)
    rec = records[0]
    m, s, _ = predictor.predict(point_coords=np.array(rec['point_coords']), point_labels=[1])
    best = int(np.argmax(s))
    assert abs(float(s[best]) - rec['predicted_iou']) < 1e-4


def test_onnx_encoder_and_decoder(model, image, tmp_path):
    pytest.importorskip('onnxruntime')
    from mmsam.deploy import ONNXPredictor, export_decoder, export_encoder

    encoder = export_encoder(model, tmp_path / 'encoder.onnx')
    decoder = export_decoder(model, tmp_path / 'decoder.onnx')
    onnx = ONNXPredictor(decoder, encoder=encoder)
    onnx.set_image(image)
    ours = SAMPredictor(model)
    ours.set_image(image)
    emb = ours.get_image_embedding().numpy()
    np.testing.assert_allclose(onnx.get_image_embedding(), emb, atol=1e-4, rtol=0)
    prompt = dict(point_coords=np.array([[100.0, 70.0]]), point_labels=np.array([1]))
    _, onnx_scores, onnx_low = onnx.predict(**prompt)
    _, scores, low = ours.predict(**prompt)
    np.testing.assert_allclose(onnx_scores, scores, atol=1e-3, rtol=0)
    np.testing.assert_allclose(onnx_low, low, atol=1e-3, rtol=0)


@pytest.fixture(scope='module')
def checkpoint(model, tmp_path_factory):
    """The 256-px model's weights (mmsam layout)."""
    path = tmp_path_factory.mktemp('mobile_sam') / 'mobile_sam_small.pth'
    save_checkpoint(model.state_dict(), str(path))
    return str(path)


def test_cli_segment_with_model_name(image, tmp_path):
    """``mmsam segment --model <MobileSAM name>`` (1024 px) equals the predictor's mask."""
    torch.manual_seed(3)
    full = mmsam.get_model(NAME)
    randomize_mobile_sam(full, seed=3)
    assert_cli_segment_matches_predictor(NAME, full, image, str(tmp_path))


def test_tools_test_box_prompt_config(checkpoint, tmp_path):
    """tools/test.py with MobileSAM's box-prompt config on the COCO fixture."""
    config = os.path.join(
        REPO, 'configs/mobile_sam/mobile-sam_tinyvit-5m_coco-val2017_box-prompt.py'
    )
    assert_box_prompt_eval_runs(config, checkpoint, str(tmp_path), IMG)
