"""tools/model_converters/sam2mmsam.py: official / HF / mmpretrain files to mmsam checkpoints."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmsam.testing import build_official_sam
from mmsam.testing.hf_layout import official_to_hf_state_dict
from mmsam.testing.tool_scripts import load_tool
from mmsam.utils.checkpoint_keys import convert_official_to_mmsam

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'model_converters' / 'sam2mmsam.py'


def _load_tool():
    return load_tool(TOOL.relative_to(ROOT).as_posix())


@pytest.fixture(scope='module')
def tool():
    return _load_tool()


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    model = build_official_sam('tiny', img_size=256, window_size=4, seed=4)
    path = tmp_path_factory.mktemp('src') / 'sam_tiny.pth'
    torch.save(model.state_dict(), path)
    return model.state_dict(), str(path)


def _assert_same(a, b):
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:10]
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_official_to_mmsam(tool, official, tmp_path, capsys):
    state, src = official
    dst = tmp_path / 'out' / 'sam_tiny_mmsam.pth'
    assert tool.main([src, str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'official layout, 174 tensors' in out
    assert '64 wide, 2 layers, 2 heads' in out and 'all source keys used' in out
    ckpt = torch.load(dst, weights_only=True)  # torch's safe loader reads it
    _assert_same(ckpt['state_dict'], convert_official_to_mmsam(state))
    meta = ckpt['meta']
    assert meta['source_layout'] == 'official' and meta['source_file'] == 'sam_tiny.pth'
    assert meta['arch'] == 'custom' and meta['model_type'] == 'SAM'
    assert meta['arch_settings']['global_attn_indexes'] == [1]
    assert [p.name for p in dst.parent.iterdir()] == ['sam_tiny_mmsam.pth']  # no temp files


def test_backbone_only_writes_the_mmpretrain_layout(tool, official, tmp_path, capsys):
    state, src = official
    dst = tmp_path / 'vit_tiny.pth'
    assert tool.main([src, str(dst), '--backbone-only']) == 0
    assert 'image encoder (mmpretrain ViTSAM layout)' in capsys.readouterr().out
    written = torch.load(dst, weights_only=True)['state_dict']
    expected = {
        k: v for k, v in convert_official_to_mmsam(state).items() if k.startswith('backbone.')
    }
    _assert_same(written, expected)
    assert 'backbone.layers.1.ffn.layers.0.0.weight' in written


@pytest.mark.parametrize('suffix', ['.safetensors', '.bin'])
def test_hf_files_convert_to_the_same_checkpoint(tool, official, tmp_path, suffix):
    state, _ = official
    hf = official_to_hf_state_dict(state, positional='both')
    src = tmp_path / f'model{suffix}'
    if suffix == '.safetensors':
        from safetensors.torch import save_file

        # safetensors refuses shared tensors: store the tied matrix once, as HF does
        hf.pop('prompt_encoder.shared_embedding.positional_embedding')
        save_file({k: v.contiguous() for k, v in hf.items()}, str(src))
    else:
        torch.save(hf, src)
    dst = tmp_path / 'sam.pth'
    assert tool.main([str(src), str(dst), '--layout', 'hf']) == 0
    ckpt = torch.load(dst, weights_only=True)
    _assert_same(ckpt['state_dict'], convert_official_to_mmsam(state))
    assert ckpt['meta']['source_layout'] == 'hf'


def test_mmpretrain_backbone_converts_back_to_itself(tool, official, tmp_path):
    _, src = official
    vit = tmp_path / 'vit.pth'
    again = tmp_path / 'vit_again.pth'
    assert tool.main([src, str(vit), '--backbone-only']) == 0
    assert tool.main([str(vit), str(again), '--backbone-only', '--layout', 'mmpretrain']) == 0
    a = torch.load(vit, weights_only=True)['state_dict']
    b = torch.load(again, weights_only=True)['state_dict']
    _assert_same(a, b)


@pytest.mark.parametrize(
    'case, extra, message',
    [
        ('missing', [], r'does not exist'),
        ('text', [], r'not a readable PyTorch checkpoint'),
        ('official', ['--layout', 'hf'], r"'hf' was asked for.*'official' layout"),
        ('backbone', [], r'image encoder only.*--backbone-only'),
        ('extra_key', [], r'unknown official|not part of SAM.*image_encoder\.blocks\.9'),
    ],
)
def test_bad_sources_fail_with_one_line_and_no_output(
    tool, official, tmp_path, capsys, case, extra, message
):
    state, src = official
    if case == 'missing':
        src = str(tmp_path / 'nope.pth')
    elif case == 'text':
        src = str(tmp_path / 'notes.pth')
        Path(src).write_text('hello')
    elif case == 'backbone':
        src = str(tmp_path / 'vit.pth')
        assert tool.main([official[1], src, '--backbone-only']) == 0
        capsys.readouterr()
    elif case == 'extra_key':
        bad = dict(state)
        bad['image_encoder.blocks.9.extra.weight'] = torch.zeros(1)
        src = str(tmp_path / 'extra.pth')
        torch.save(bad, src)
    dst = tmp_path / 'out.pth'
    assert tool.main([src, str(dst), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and re.search(message, err), err
    assert not dst.exists()


def test_runs_as_a_script(official, tmp_path):
    _, src = official
    dst = tmp_path / 'sam.pth'
    proc = subprocess.run(
        [sys.executable, str(TOOL), src, str(dst)],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'wrote:' in proc.stdout and dst.is_file()


def _time_v(stderr: str) -> dict:
    """Wall time (s) and peak resident memory (MB) from ``/usr/bin/time -v``."""
    out = {}
    rss = re.search(r'Maximum resident set size \(kbytes\): (\d+)', stderr)
    wall = re.search(r'Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)', stderr)
    if rss:
        out['peak_mb'] = int(rss[1]) / 1024
    if wall:
        hours, minutes, seconds = wall.groups()
        out['wall_s'] = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    return out


@pytest.mark.full_size
@pytest.mark.slow
def test_full_size_vit_b_converts_and_loads_by_name(tmp_path):
    """A 375 MB ViT-B official file: convert with the tool, load by name, same weights.

    Time and peak memory of the conversion are printed (``pytest -s``), not asserted.
    """
    from mmsam.apis import get_model

    official = build_official_sam('base', img_size=1024, window_size=14, seed=0)
    src = tmp_path / 'sam_vit_b_01ec64.pth'
    torch.save(official.state_dict(), src)
    expected = convert_official_to_mmsam(official.state_dict())
    del official
    dst = tmp_path / 'sam_vit-base-p16_3rdparty_sa1b-1024px.pth'
    cmd = [sys.executable, str(TOOL), str(src), str(dst)]
    if os.path.exists('/usr/bin/time'):
        cmd = ['/usr/bin/time', '-v'] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert 'base ViT encoder: 768 wide, 12 layers, 12 heads' in proc.stdout
    print(f'\nsource {src.stat().st_size / 2**20:.0f} MiB; conversion: {_time_v(proc.stderr)}')
    model = get_model('sam_vit-base-p16_3rdparty_sa1b-1024px', pretrained=str(dst))
    _assert_same(model.state_dict(), expected)
