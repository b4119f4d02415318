"""EfficientViT-SAM's official checkpoint layout (``efficientvit_sam_*.pt``: ``image_encoder.
backbone.*``, ``image_encoder.neck.*``, ``image_encoder.norm.*``, ``prompt_encoder.*``,
``mask_decoder.*``) loads strictly through the one loading path, by name, by config and
through ``tools/model_converters/sam2mmsam.py``; checkpoints of another family or size are
refused with the file name."""

import os

import pytest
import torch

import mmsam
from mmsam.apis.convert import convert_checkpoint
from mmsam.apis.model_zoo import load_pretrained
from mmsam.models import SAMEfficientViT
from mmsam.testing.efficientvit_sam_parity import (
    build_official_efficientvit_sam,
    efficientvit_sam_config_path,
)
from mmsam.testing.tool_scripts import load_tool
from mmsam.utils.checkpoint_io import CheckpointLoadError, CheckpointMismatchError
from mmsam.utils.checkpoint_keys import (
    convert_mmsam_to_official,
    infer_encoder_arch,
    official_key_to_mmsam,
)

pytest.importorskip('efficientsam')

NAME = 'efficientvit-sam_l0_3rdparty_sa1b-512px'


@pytest.fixture(scope='module')
def official_file(tmp_path_factory):
    """A file with exactly the layout of ``efficientvit_sam_l0.pt`` (the reference's state
    dict, seeded random weights)."""
    official = build_official_efficientvit_sam('l0', seed=3)
    path = tmp_path_factory.mktemp('efficientvit_sam') / 'efficientvit_sam_l0.pt'
    state = official.state_dict()
    torch.save(state, path)
    return str(path), state


def _assert_same_weights(model, official_state):
    own = model.state_dict()
    for key, value in official_state.items():
        assert torch.equal(own[official_key_to_mmsam(key)], value), key
    assert len(official_state) == len(own)  # every model key came from the file


def test_official_file_loads_by_name_and_config_strictly(official_file, tmp_path):
    path, state = official_file
    assert any(k.startswith('image_encoder.neck.input_ops.') for k in state)
    _assert_same_weights(mmsam.get_model(NAME, pretrained=path), state)
    info = load_pretrained(mmsam.get_model(efficientvit_sam_config_path('l0')), path)
    assert info['layout'] == 'official' and info['ignored'] == []
    wrapped = tmp_path / 'wrapped.pt'  # {'state_dict': ...}, which the reference reads too
    torch.save({'state_dict': state}, wrapped)
    _assert_same_weights(mmsam.get_model(NAME, pretrained=str(wrapped)), state)


def test_converter_writes_an_mmsam_file(official_file, tmp_path, capsys):
    path, state = official_file
    module = load_tool('tools/model_converters/sam2mmsam.py')
    dst = tmp_path / 'efficientvit_sam_l0_mmsam.pth'
    assert module.main([path, str(dst)]) == 0
    printed = capsys.readouterr().out
    assert 'EfficientViT-SAM L0 encoder' in printed and NAME in printed
    _assert_same_weights(mmsam.get_model(NAME, pretrained=str(dst)), state)
    with pytest.raises(CheckpointLoadError, match='efficientvit_sam_l0.pt.*no headless'):
        convert_checkpoint(path, str(tmp_path / 'enc.pth'), backbone_only=True)


def test_back_to_the_official_layout(official_file):
    _, state = official_file
    back = convert_mmsam_to_official(mmsam.get_model(NAME).state_dict())
    assert set(back) == set(state)
    assert all(back[k].shape == state[k].shape for k in back)


@pytest.mark.parametrize('arch', sorted(SAMEfficientViT.arch_zoo))
def test_arch_read_from_shapes(arch):
    with torch.device('meta'):
        state = SAMEfficientViT(arch).state_dict()
    info = infer_encoder_arch(state, prefix='')
    assert info['encoder'] == 'efficientvit' and info['arch'] == arch


def test_wrong_model_files_are_refused_with_the_file_name(official_file, tmp_path):
    from mmsam.testing import build_official_sam

    path, _ = official_file
    vit_file = tmp_path / 'sam_vit_tiny.pth'
    torch.save(build_official_sam('tiny', img_size=1024).state_dict(), vit_file)
    with pytest.raises(CheckpointMismatchError, match='sam_vit_tiny.pth') as err:
        mmsam.get_model(NAME, pretrained=str(vit_file))
    assert 'EfficientViT-SAM L0' in str(err.value)  # names both encoders
    with pytest.raises(CheckpointMismatchError, match='efficientvit_sam_l0.pt') as err:
        mmsam.get_model('sam_vit-base-p16_3rdparty_sa1b-1024px', pretrained=path)
    assert 'EfficientViT-SAM L0' in str(err.value)
    with pytest.raises(CheckpointMismatchError, match='efficientvit_sam_l0.pt') as err:
        mmsam.get_model('efficientvit-sam_l1_3rdparty_sa1b-512px', pretrained=path)
    assert 'EfficientViT-SAM L0' in str(err.value) and 'EfficientViT-SAM L1' in str(err.value)
    junk = tmp_path / 'not_sam.pth'
    torch.save({'image_encoder.neck.input_ops.0.foo.weight': torch.zeros(1)}, junk)
    with pytest.raises(CheckpointLoadError, match='not_sam.pth'):
        mmsam.get_model(NAME, pretrained=str(junk))


def test_pretrained_true_reads_the_official_file_from_the_hub_cache(
    official_file, tmp_path, monkeypatch
):
    """``get_model(name, pretrained=True)`` of every size looks for the official file name in
    the hub cache; L0's (the reference's state dict) loads from there without the network."""
    import shutil

    from mmsam.apis.model_zoo import cached_checkpoint_path, get_model_info

    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))

    def no_network(*args, **kwargs):
        raise AssertionError('the network was used')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    for name in mmsam.list_models('efficientvit-sam'):
        size = name.split('_')[1]
        cached = cached_checkpoint_path(get_model_info(name)['Weights'])
        assert os.path.basename(cached) == f'efficientvit_sam_{size}.pt'
    path, state = official_file
    cached = cached_checkpoint_path(get_model_info(NAME)['Weights'])
    os.makedirs(os.path.dirname(cached))
    shutil.copy(path, cached)
    _assert_same_weights(mmsam.get_model(NAME, pretrained=True), state)
