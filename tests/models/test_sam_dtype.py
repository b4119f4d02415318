"""Opt-in speed options of SAM: bfloat16 autocast and torch.compile (CPU checks)."""

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS

from mmsam.models.utils import autocast_context, parse_autocast_dtype
from mmsam.testing import build_sam_pair, sam_model_cfg, smooth_image


@pytest.fixture(scope='module')
def model():
    _, ours = build_sam_pair('tiny', seed=0)
    yield ours
    ours.set_speed_options()


def _cases(hw):
    """The parity suite's prompt kinds, input frame."""
    h, w = hw
    s = 1024 / max(hw)
    return [
        dict(points=(torch.tensor([[[0.4 * w * s, 0.5 * h * s]]]), torch.tensor([[1]]))),
        dict(
            points=(
                torch.tensor([[[0.3 * w, 0.3 * h], [0.6 * w, 0.7 * h], [0.1 * w, 0.9 * h]]]) * s,
                torch.tensor([[1, 0, 1]]),
            )
        ),
        dict(boxes=torch.tensor([[0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h]]) * s),
    ]


def _masks(model, image, hw):
    x, input_size = model.data_preprocessor.preprocess_image(
        torch.from_numpy(image).permute(2, 0, 1)
    )
    with torch.no_grad():
        emb = model.extract_feat(x[None])[0]
        out = []
        for case in _cases(hw):
            logits, _ = model.predict_prompts(emb, case.get('points'), case.get('boxes'))
            out.append(model.postprocess_masks(logits, input_size, hw)[0] > 0)
    return emb, out


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


@pytest.mark.parametrize(
    'setting', ['bfloat16', dict(encoder='bf16'), dict(decoder=torch.bfloat16)]
)
def test_bf16_masks_agree_with_fp32(model, setting):
    ious = []
    for hw in [(480, 640), (1200, 800)]:
        image = smooth_image(*hw, seed=hw[0])
        model.set_speed_options()
        ref_emb, ref = _masks(model, image, hw)
        model.set_speed_options(autocast_dtype=setting)
        emb, got = _masks(model, image, hw)
        model.set_speed_options()
        assert emb.dtype == torch.float32
        if not isinstance(setting, dict) or 'encoder' in setting:
            assert 0 < (emb - ref_emb).abs().max().item() < 0.1 * ref_emb.abs().max().item()
        for a, b in zip(ref, got):
            assert 0.01 < a.float().mean().item() < 0.99  # masks are not degenerate
            ious += [_iou(a[i], b[i]) for i in range(a.shape[0])]
    assert np.mean(ious) >= 0.98, np.mean(ious)


def test_deprecated_backbone_autocast_option_moves_to_sam():
    # autocast is set in one place (SAM); the encoder's former key still works, with a warning
    cfg = sam_model_cfg('tiny', img_size=256, window_size=4)
    cfg = dict(cfg, backbone=dict(cfg['backbone'], autocast_dtype='bf16'))
    with pytest.warns(DeprecationWarning, match='backbone.autocast_dtype'):
        model = MODELS.build(cfg).eval()
    assert model.encoder_autocast_dtype == torch.bfloat16
    assert model.decoder_autocast_dtype is None
    with torch.no_grad():
        out = model.extract_feat(torch.randn(1, 3, 256, 256))
    assert out[0].dtype == torch.float32 and out[0].shape == (1, 256, 16, 16)


def test_options_from_config():
    cfg = sam_model_cfg('tiny', img_size=256, window_size=4)
    model = MODELS.build(dict(cfg, autocast_dtype=dict(encoder='bfloat16'), compile=False))
    assert model.encoder_autocast_dtype == torch.bfloat16
    assert model.decoder_autocast_dtype is None


def test_bad_dtype_options_are_refused(model):
    with pytest.raises(ValueError, match='autocast_dtype'):
        parse_autocast_dtype('int8')
    with pytest.raises(ValueError, match='encoder and decoder'):
        model.set_speed_options(autocast_dtype=dict(image='bf16'))
    with pytest.raises(ValueError, match='CUDA'):
        autocast_context(torch.device('cpu'), torch.float16)
    assert parse_autocast_dtype('fp32') is None
    assert parse_autocast_dtype(torch.float16) == torch.float16


def test_compile_option_keeps_results_and_state_dict(model):
    keys = list(model.state_dict())
    torch.manual_seed(0)
    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        ref = model.extract_feat(x)[0]
        # the eager backend checks the plumbing without a C++ build
        model.set_speed_options(compile=dict(backend='eager'))
        got = model.extract_feat(x)[0]
    model.set_speed_options()
    assert list(model.state_dict()) == keys
    assert torch.allclose(got, ref, atol=1e-5)
