"""Hugging Face key map, layout detection and size detection in mmsam.utils.checkpoint_keys."""

from collections import OrderedDict

import pytest
import torch

from mmsam.models.backbones.sam_image_encoder import SAMImageEncoder
from mmsam.testing import TEST_ARCHS, build_official_sam
from mmsam.testing.hf_layout import official_to_hf_state_dict
from mmsam.utils.checkpoint_keys import (
    KeyMapError,
    convert_hf_to_mmsam,
    convert_official_to_mmsam,
    detect_layout,
    hf_key_to_mmsam,
    infer_encoder_arch,
    to_mmsam_layout,
)


@pytest.fixture(scope='module')
def official_state():
    return build_official_sam('tiny', img_size=256, window_size=4, seed=3).state_dict()


@pytest.fixture(scope='module')
def mmsam_state(official_state):
    return convert_official_to_mmsam(official_state)


def _assert_same(a, b):
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:10]
    for key in b:
        assert a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize('positional', ['both', 'model', 'prompt'])
@pytest.mark.parametrize('legacy', [False, True])
def test_hf_state_dict_converts_to_the_official_conversion(
    official_state, mmsam_state, positional, legacy
):
    hf = official_to_hf_state_dict(
        official_state, positional=positional, legacy_upscale_name=legacy
    )
    assert not any(k.startswith('image_encoder.') for k in hf)
    _assert_same(convert_hf_to_mmsam(hf), mmsam_state)


def test_hf_key_examples():
    assert hf_key_to_mmsam('vision_encoder.neck.layer_norm2.bias') == (
        'backbone.channel_reduction.3.bias'
    )
    assert hf_key_to_mmsam('vision_encoder.layers.7.mlp.lin2.weight') == (
        'backbone.layers.7.ffn.layers.1.weight'
    )
    assert hf_key_to_mmsam('prompt_encoder.mask_embed.conv3.bias') == (
        'prompt_encoder.mask_downscaling.6.bias'
    )
    assert hf_key_to_mmsam('mask_decoder.iou_prediction_head.proj_out.weight') == (
        'mask_decoder.iou_prediction_head.layers.2.weight'
    )
    assert hf_key_to_mmsam('mask_decoder.output_hypernetworks_mlps.3.layers.0.bias') == (
        'mask_decoder.output_hypernetworks_mlps.3.layers.1.bias'
    )
    assert hf_key_to_mmsam('mask_decoder.transformer.layers.1.layer_norm4.weight') == (
        'mask_decoder.transformer.layers.1.norm4.weight'
    )


def test_tied_positional_copies_must_agree(official_state):
    hf = official_to_hf_state_dict(official_state, positional='both')
    hf['shared_image_embedding.positional_embedding'] = (
        hf['shared_image_embedding.positional_embedding'] + 1
    )
    with pytest.raises(KeyMapError, match='positional_encoding_gaussian_matrix'):
        convert_hf_to_mmsam(hf)


def test_unknown_hf_keys_are_named(official_state):
    hf = official_to_hf_state_dict(official_state)
    hf['vision_encoder.layers.0.attn.q_norm.weight'] = torch.zeros(2)
    with pytest.raises(KeyMapError, match=r'q_norm'):
        convert_hf_to_mmsam(hf)


def test_detect_layout(official_state, mmsam_state):
    backbone = OrderedDict((k, v) for k, v in mmsam_state.items() if k.startswith('backbone.'))
    bare = OrderedDict((k[len('backbone.') :], v) for k, v in backbone.items())
    assert detect_layout(official_state) == 'official'
    assert detect_layout(official_to_hf_state_dict(official_state)) == 'hf'
    assert detect_layout(mmsam_state) == 'mmsam'
    assert detect_layout(backbone) == 'mmpretrain'
    assert detect_layout(bare) == 'mmpretrain'
    resnet = {'conv1.weight': torch.zeros(1), 'layer1.0.conv1.weight': torch.zeros(1)}
    with pytest.raises(ValueError, match=r'not a SAM state dict.*conv1\.weight'):
        detect_layout(resnet)


def test_to_mmsam_layout(official_state, mmsam_state):
    with_buffers = OrderedDict(official_state)
    with_buffers['pixel_mean'] = torch.zeros(3, 1, 1)
    state, layout, ignored = to_mmsam_layout(with_buffers)
    assert layout == 'official' and ignored == ['pixel_mean']
    _assert_same(state, mmsam_state)
    bare = OrderedDict(
        (k[len('backbone.') :], v) for k, v in mmsam_state.items() if k.startswith('backbone.')
    )
    state, layout, _ = to_mmsam_layout(bare)
    assert layout == 'mmpretrain' and all(k.startswith('backbone.') for k in state)
    with pytest.raises(ValueError, match="layout 'hf' was asked for.*'official'"):
        to_mmsam_layout(official_state, 'hf')
    with pytest.raises(ValueError, match='layout must be'):
        to_mmsam_layout(official_state, 'timm')


@pytest.mark.parametrize('size', ['base', 'large', 'huge'])
def test_infer_sam_sizes(size):
    with torch.device('meta'):
        encoder = SAMImageEncoder(arch=size)
    state = {'backbone.' + k: v for k, v in encoder.state_dict().items()}
    info = infer_encoder_arch(state)
    assert info['arch'] == size
    assert info['arch_settings'] == SAMImageEncoder.arch_zoo[size]
    assert (info['img_size'], info['patch_size'], info['window_size']) == (1024, 16, 14)


def test_infer_custom_size(mmsam_state):
    info = infer_encoder_arch(mmsam_state)
    assert info['arch'] == 'custom'
    assert info['arch_settings'] == TEST_ARCHS['tiny']
    assert (info['img_size'], info['window_size']) == (256, 4)
    with pytest.raises(ValueError, match='no image encoder'):
        infer_encoder_arch({'prompt_encoder.x': torch.zeros(1)})
