"""Configs build the models with MODELS.build and nothing else; sizes match the paper."""

from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import mmsam.registration  # noqa: F401  (registers the modules)

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'sam'

# image-encoder parameters (mmpretrain's metafile: 89.67M, 308M, 637M)
ENCODER_PARAMS = {'base': 89.67e6, 'large': 308.28e6, 'huge': 637.03e6}


def _build_on_meta(cfg_model, registry):
    with torch.device('meta'):
        return registry.build(cfg_model)


@pytest.mark.parametrize('size', ['base', 'large', 'huge'])
def test_full_model_configs_build(size):
    from mmdet.registry import MODELS

    cfg = Config.fromfile(str(CONFIGS / f'sam_vit-{size}-p16_3rdparty_sa1b-1024px.py'))
    model = _build_on_meta(cfg.model, MODELS)
    assert type(model).__name__ == 'SAM'
    assert model.backbone.arch_settings == type(model.backbone).arch_zoo[size]
    n_encoder = sum(p.numel() for p in model.backbone.parameters())
    assert abs(n_encoder - ENCODER_PARAMS[size]) / ENCODER_PARAMS[size] < 0.005
    n_decoder = sum(p.numel() for p in model.mask_decoder.parameters())
    n_prompt = sum(p.numel() for p in model.prompt_encoder.parameters())
    assert n_decoder == 4_058_340  # the official mask decoder
    assert n_prompt == 6_220


@pytest.mark.parametrize('scope', [None, 'mmdet'])
def test_full_model_builds_with_or_without_mmdet_default_scope(scope):
    """The runner sets ``default_scope='mmdet'``; the mmpretrain encoder must still build."""
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    cfg = Config.fromfile(str(CONFIGS / 'sam_vit-base-p16_3rdparty_sa1b-1024px.py'))
    with DefaultScope.overwrite_default_scope(scope):
        model = _build_on_meta(cfg.model, MODELS)
    assert type(model.backbone).__name__ == 'SAMImageEncoder'
    assert type(model.data_preprocessor).__name__ == 'SAMDataPreprocessor'


@pytest.mark.parametrize('size', ['base', 'large', 'huge'])
def test_headless_configs_build_mmpretrain_models(size):
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(str(CONFIGS / f'vit-{size}-p16_sam_headless.py'))
    model = _build_on_meta(cfg.model, MODELS)
    assert type(model).__name__ == 'ImageClassifier'
    assert type(model.backbone).__name__ == 'SAMImageEncoder'
    assert not model.with_neck and not model.with_head
    assert model.backbone.arch_settings == type(model.backbone).arch_zoo[size]


def test_headless_extract_feat_shape():
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(str(CONFIGS / 'vit-base-p16_sam_headless.py'))
    cfg.model.backbone.arch = dict(
        embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128, global_attn_indexes=[1]
    )
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(1, 3, 1024, 1024))
    assert isinstance(feats, tuple) and feats[0].shape == (1, 256, 64, 64)


def test_other_input_sizes_interpolate_position_embeddings():
    from mmpretrain.registry import MODELS

    arch = dict(
        embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128, global_attn_indexes=[1]
    )
    big = MODELS.build(dict(type='SAMImageEncoder', arch=arch, img_size=1024)).eval()
    big.init_weights()
    small = MODELS.build(dict(type='SAMImageEncoder', arch=arch, img_size=512)).eval()
    small.load_state_dict(big.state_dict())  # pos_embed and global rel_pos are resampled
    assert small.pos_embed.shape == (1, 32, 32, 64)
    with torch.no_grad():
        out_big_on_512 = big(torch.rand(1, 3, 512, 512))[0]
        out_small = small(torch.rand(1, 3, 512, 512))[0]
    assert out_big_on_512.shape == out_small.shape == (1, 256, 32, 32)


def test_image_encoder_is_vitsam_with_its_state_dict_and_frozen_stages():
    from mmpretrain.models.backbones import ViTSAM
    from mmpretrain.registry import MODELS

    arch = dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64, global_attn_indexes=[1]
    )
    common = dict(arch=arch, img_size=64, window_size=2, out_channels=16)
    ours = MODELS.build(dict(type='SAMImageEncoder', frozen_stages=5, **common))
    ref = ViTSAM(**common)
    assert isinstance(ours, ViTSAM)
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    # frozen_stages past the last layer freezes every layer and the neck (as before)
    ours.train()
    assert not any(p.requires_grad for p in ours.parameters())
    frozen = [ours.patch_embed, *ours.layers, ours.channel_reduction]
    assert not any(m.training for f in frozen for m in f.modules())
    assert ours.get_layer_depth('layers.1.attn.qkv.weight') == (2, 4)
