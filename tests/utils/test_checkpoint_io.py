"""Tests for mmsam.utils.checkpoint_io: atomic, weights_only-safe checkpoints."""

import os

import pytest
import torch

from mmsam.utils.checkpoint_io import atomic_torch_save, load_state_dict_file, save_checkpoint


def test_round_trip_weights_only(tmp_path):
    state = {'a.weight': torch.randn(3, 4), 'b': torch.arange(5)}
    path = tmp_path / 'sub' / 'ckpt.pth'
    save_checkpoint(state, str(path), meta=dict(arch='base', converted_from='x.pth', n=[1, 2]))
    raw = torch.load(path, weights_only=True)
    assert raw['meta'] == dict(arch='base', converted_from='x.pth', n=[1, 2])
    loaded = load_state_dict_file(str(path))
    assert list(loaded) == ['a.weight', 'b']
    assert torch.equal(loaded['a.weight'], state['a.weight'])
    # no temporary file is left behind
    assert os.listdir(path.parent) == ['ckpt.pth']


def test_bare_and_model_wrapped_state_dicts(tmp_path):
    t = torch.ones(2)
    torch.save({'x': t}, tmp_path / 'bare.pth')
    torch.save({'model': {'x': t}, 'epoch': 3}, tmp_path / 'wrapped.pth')
    assert torch.equal(load_state_dict_file(str(tmp_path / 'bare.pth'))['x'], t)
    assert torch.equal(load_state_dict_file(str(tmp_path / 'wrapped.pth'))['x'], t)


def test_safetensors(tmp_path):
    safetensors = pytest.importorskip('safetensors.torch')
    t = torch.randn(2, 2)
    safetensors.save_file({'x': t}, str(tmp_path / 'm.safetensors'))
    assert torch.equal(load_state_dict_file(str(tmp_path / 'm.safetensors'))['x'], t)


def test_refuses_objects_weights_only_cannot_read(tmp_path):
    with pytest.raises(TypeError, match='meta'):
        save_checkpoint({'x': torch.ones(1)}, str(tmp_path / 'c.pth'), meta=dict(cfg=object()))
    with pytest.raises(TypeError, match="state_dict\\['x'\\]"):
        save_checkpoint({'x': 1.0}, str(tmp_path / 'c.pth'))
    assert not (tmp_path / 'c.pth').exists()


def test_failed_write_leaves_old_file(tmp_path):
    path = tmp_path / 'c.pth'
    path.write_bytes(b'old')

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError('boom')

    with pytest.raises(RuntimeError, match='boom'):
        atomic_torch_save({'x': Unpicklable()}, str(path))
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['c.pth']


def test_bad_files_named_in_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_state_dict_file(str(tmp_path / 'missing.pth'))
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='junk.pth'):
        load_state_dict_file(str(tmp_path / 'junk.pth'))
    torch.save({'epoch': 1}, tmp_path / 'nostate.pth')
    with pytest.raises(ValueError, match='no state dict'):
        load_state_dict_file(str(tmp_path / 'nostate.pth'))
