"""Every error of the ``mmsam`` command is one clear line with the documented exit code."""

import argparse
import json
import subprocess
import sys
import urllib.error

import pytest
import torch
from cli_fixtures import model_args, scene
from PIL import Image

from mmsam.cli import main

HEAVY = ('torch', 'mmdet', 'mmpretrain', 'mmengine', 'mmcv')


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if 'error:' in line]
    assert len(lines) == 1 and 'Traceback' not in err, err
    return lines[0]


@pytest.mark.parametrize(
    'code',
    [
        "main(['--help'])",
        "main(['segment', '--help'])",
        "main(['amg', '--help'])",
        "main(['annotate', '--help'])",
        "main(['convert', '--help'])",
        "main(['amg'])",  # an argument error
        "main(['amg', 'x', '--points-per-side', '0'])",
        "print(mmsam.list_models('sam_vit'))",
    ],
)
def test_help_errors_and_listing_import_no_heavy_package(code):
    script = (
        'import sys\n'
        'import mmsam\n'
        'from mmsam.cli import main\n'
        'try:\n'
        f'    {code}\n'
        'except SystemExit as e:\n'
        '    print("exit", e.code)\n'
        f'print("heavy", [m for m in {HEAVY!r} if m in sys.modules])\n'
    )
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'heavy []' in out.stdout, out.stdout
    if 'list_models' in code:
        assert 'sam_vit-base-p16_3rdparty_sa1b-1024px' in out.stdout
    elif 'help' in code:
        assert 'exit 0' in out.stdout
    else:
        assert 'exit 2' in out.stdout


def test_bad_device_names(tiny, tmp_path, capsys):
    cmd = ['segment', tiny['image'], '--points', '5,5', '--out-dir', str(tmp_path)]
    args = model_args(tiny)[:-2]  # without --device cpu
    assert main([*cmd, *args, '--device', 'gpu0']) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "bad --device 'gpu0'" in line and 'cuda:N' in line
    if not torch.cuda.is_available():
        assert main([*cmd, *args, '--device', 'cuda']) == 1
        line = _one_line_error(capsys.readouterr().err)
        assert 'no CUDA GPU is available' in line and '--device cpu' in line
    else:
        bad = f'cuda:{torch.cuda.device_count()}'
        assert main([*cmd, *args, '--device', bad]) == 1
        assert 'there is no GPU' in _one_line_error(capsys.readouterr().err)


def test_ctrl_c_exits_130_and_the_rerun_resumes(tiny, tmp_path, monkeypatch, capsys):
    from mmsam.apis.mask_generator import AutomaticMaskGenerator

    data = tmp_path / 'data'
    data.mkdir()
    for i in range(3):
        Image.fromarray(scene(seed=i)).save(data / f'{i}.png')
    generate = AutomaticMaskGenerator.generate
    calls = []

    def interrupted_on_the_second(self, image, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(self, image, *args, **kwargs)

    monkeypatch.setattr(AutomaticMaskGenerator, 'generate', interrupted_on_the_second)
    cmd = ['amg', str(data), '--out-dir', str(tmp_path / 'out'), '--points-per-side', '2']
    assert main([*cmd, *model_args(tiny)]) == 130
    err = capsys.readouterr().err
    assert 'interrupted' in err and 'rerun' in err and 'Traceback' not in err
    monkeypatch.setattr(AutomaticMaskGenerator, 'generate', generate)
    assert main([*cmd, *model_args(tiny)]) == 0
    assert '2 processed, 1 skipped' in capsys.readouterr().out


@pytest.mark.parametrize(
    'option',
    [
        ['--points-per-side', '0'],
        ['--points-per-batch', '-1'],
        ['--box-nms-thresh', '1.5'],
        ['--crop-n-layers', '-1'],
        ['--crop-overlap-ratio', '1'],
        ['--crop-n-points-downscale-factor', '0'],
        ['--pred-iou-thresh', 'nan'],
        ['--min-mask-region-area', 'ten'],
    ],
)
def test_bad_amg_option_values_exit_2(tiny, tmp_path, option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(['amg', tiny['image'], '--out-dir', str(tmp_path), *option, *model_args(tiny)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option[0] in err and 'expected' in err and 'Traceback' not in err


def test_negative_coordinates_are_values(tiny, tmp_path, capsys):
    out = ['--out-dir', str(tmp_path), *model_args(tiny)]
    # a point left of the image: parsed, then refused as outside the image
    assert main(['segment', tiny['image'], '--points', '-5,10', *out]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert '[-5.0, 10.0] is outside the image' in line
    assert main(['segment', tiny['image'], '--boxes', '-1,-1,20,20', *out]) == 1
    assert 'outside the image' in _one_line_error(capsys.readouterr().err)
    assert main(['segment', tiny['image'], '--points', '10,10', '-0.5,4:0', *out]) == 1
    assert '[-0.5, 4.0]' in _one_line_error(capsys.readouterr().err)


def test_garbage_and_pickled_checkpoints(tiny, tmp_path, capsys):
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'this is not a checkpoint at all' * 10)
    pickled = tmp_path / 'pickled.pth'
    torch.save({'state_dict': {}, 'meta': argparse.Namespace(x=1)}, pickled)
    for path in (garbage, pickled):
        cmd = ['segment', tiny['image'], '--points', '5,5', '--out-dir', str(tmp_path / 'o')]
        assert main([*cmd, '--model', tiny['config'], '--weights', str(path)]) == 1
        line = _one_line_error(capsys.readouterr().err)
        assert path.name in line
        assert 'weights_only=False' not in line and 'weights_only' not in line


def _write_image_folder(root):
    root.mkdir()
    Image.fromarray(scene()).save(root / 'x.png')
    return root


def test_detector_names(tiny, tmp_path, monkeypatch, capsys):
    data = _write_image_folder(tmp_path / 'imgs')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    cmd = ['annotate', str(data), '--out-dir', str(tmp_path / 'ann'), *model_args(tiny)]
    # a model name mmdet knows, whose weights cannot be downloaded here
    assert main([*cmd, '--det-model', 'rtmdet_tiny_8xb32-300e_coco']) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert 'rtmdet_tiny_8xb32-300e_coco' in line and 'could not be downloaded' in line
    assert '--det-weights' in line and 'neither' not in line
    # a name mmdet does not know
    assert main([*cmd, '--det-model', 'no_such_detector_xyz']) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert 'no_such_detector_xyz' in line and 'not an mmdet model name' in line


def test_amg_crop_layers_on_a_tiny_image(tiny, tmp_path, capsys):
    data = tmp_path / 'tiny'
    data.mkdir()
    Image.fromarray(scene(h=3, w=4)).save(data / 'small.png')
    Image.fromarray(scene(h=1, w=1)).save(data / 'pixel.png')
    out = tmp_path / 'out'
    cmd = ['amg', str(data), '--out-dir', str(out), '--points-per-side', '2']
    rc = main([*cmd, '--crop-n-layers', '2', '--pred-iou-thresh', '0', *model_args(tiny)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for name in ('small.png', 'pixel.png'):
        sa1b = json.loads((out / f'{name}.json').read_text())
        assert sa1b['image']['file_name'] == name
