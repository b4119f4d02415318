"""MobileSAM's official checkpoint layout (``mobile_sam.pt``: ``image_encoder.*`` TinyViT names,
``prompt_encoder.*``, ``mask_decoder.*``) loads strictly through the one loading path."""

import warnings

import pytest
import torch

import mmsam
from mmsam.apis.convert import convert_checkpoint
from mmsam.apis.model_zoo import load_pretrained
from mmsam.testing.mobile_sam_parity import build_official_mobile_sam
from mmsam.testing.tool_scripts import load_tool
from mmsam.utils.checkpoint_io import CheckpointLoadError, CheckpointMismatchError
from mmsam.utils.checkpoint_keys import (
    convert_mmsam_to_official,
    infer_encoder_arch,
    official_key_to_mmsam,
)

pytest.importorskip('timm')
pytest.importorskip('mobile_sam')

NAME = 'mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px'
HEADLESS = 'tinyvit-5m_mobile-sam-pre_3rdparty_sa1b-1024px'
CLASSIFIER = {'image_encoder.norm_head.weight', 'image_encoder.norm_head.bias'} | {
    'image_encoder.head.weight',
    'image_encoder.head.bias',
}


@pytest.fixture(scope='module')
def official_file(tmp_path_factory):
    """A file with exactly the layout of ``mobile_sam.pt`` (the reference's state dict)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        official = build_official_mobile_sam(seed=3)
    path = tmp_path_factory.mktemp('mobile_sam') / 'mobile_sam.pt'
    state = official.state_dict()
    torch.save(state, path)
    return str(path), state


def _assert_same_weights(model, official_state, prefix=''):
    own = model.state_dict()
    used = 0
    for key, value in official_state.items():
        if key in CLASSIFIER:
            continue
        mapped = official_key_to_mmsam(key)
        if prefix and not mapped.startswith(prefix):
            continue
        assert torch.equal(own[mapped], value), key
        used += 1
    assert used == len(own)  # every model key came from the file


def test_official_file_loads_by_name_strictly(official_file):
    path, state = official_file
    assert CLASSIFIER <= set(state)  # the reference keeps TinyViT's ImageNet head
    model = mmsam.get_model(NAME, pretrained=path)
    _assert_same_weights(model, state)
    info = load_pretrained(mmsam.get_model(NAME), path)
    assert info['layout'] == 'official' and set(info['ignored']) == CLASSIFIER


def test_headless_encoder_takes_the_encoder(official_file):
    path, state = official_file
    model = mmsam.get_model(HEADLESS, pretrained=path)
    _assert_same_weights(model, state, prefix='backbone.')


def test_converter_writes_an_mmsam_file(official_file, tmp_path, capsys):
    path, state = official_file
    module = load_tool('tools/model_converters/sam2mmsam.py')
    dst = tmp_path / 'mobile_sam_mmsam.pth'
    assert module.main([path, str(dst)]) == 0
    printed = capsys.readouterr().out
    assert '5m TinyViT encoder' in printed and NAME in printed
    _assert_same_weights(mmsam.get_model(NAME, pretrained=str(dst)), state)

    report = convert_checkpoint(path, str(tmp_path / 'enc.pth'), backbone_only=True)
    assert report.model_name == HEADLESS and report.arch == '5m'
    _assert_same_weights(mmsam.get_model(HEADLESS, pretrained=report.dst), state, 'backbone.')


def test_back_to_the_official_layout(official_file):
    """mmsam -> official names give the reference's keys (less the unused classifier)."""
    _, state = official_file
    model = mmsam.get_model(NAME)
    back = convert_mmsam_to_official(model.state_dict())
    assert set(back) == set(state) - CLASSIFIER
    assert all(back[k].shape == state[k].shape for k in back)


def test_arch_read_from_shapes(official_file):
    path, _ = official_file
    info = infer_encoder_arch(mmsam.get_model(NAME).state_dict())
    assert info['encoder'] == 'tinyvit' and info['arch'] == '5m'
    assert info['arch_settings']['num_heads'] == [2, 4, 5, 10]


def test_wrong_model_files_are_refused_with_the_file_name(official_file, tmp_path):
    from mmsam.testing import build_official_sam

    path, _ = official_file
    vit_file = tmp_path / 'sam_vit_tiny.pth'
    torch.save(build_official_sam('tiny', img_size=1024).state_dict(), vit_file)
    with pytest.raises(CheckpointMismatchError, match='sam_vit_tiny.pth') as err:
        mmsam.get_model(NAME, pretrained=str(vit_file))
    assert 'TinyViT 5m' in str(err.value)  # names both encoders
    with pytest.raises(CheckpointMismatchError, match='mobile_sam.pt'):
        mmsam.get_model('sam_vit-base-p16_3rdparty_sa1b-1024px', pretrained=path)
    junk = tmp_path / 'not_sam.pth'
    torch.save({'image_encoder.layers.0.foo.weight': torch.zeros(1)}, junk)
    with pytest.raises(CheckpointLoadError, match='not_sam.pth'):
        mmsam.get_model(NAME, pretrained=str(junk))
