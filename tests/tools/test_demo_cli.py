"""The demos and the ``mmsam`` command end to end on random-weight checkpoints."""

import json
import os
import os.path as osp
import runpy
import shlex
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
import torch
from cli_fixtures import OFFICIAL_B_URL, model_args, scene
from PIL import Image

from mmsam.cli import main
from mmsam.testing.parity import assert_masks_match_logits, build_official_sam

segment_anything = pytest.importorskip('segment_anything')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MOBILE_SAM = 'mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px'
_image = scene
_model_args = model_args


def test_segment_matches_official_predictor(tiny, tmp_path, capsys):
    from segment_anything import SamPredictor

    out = tmp_path / 'seg'
    rc = main(
        ['segment', tiny['image'], '--points', '20,30', '--out-dir', str(out), *_model_args(tiny)]
    )
    assert rc == 0, capsys.readouterr().err
    assert '1 mask(s)' in capsys.readouterr().out
    masks = np.load(out / 'scene_masks.npy')
    assert masks.shape == (1, 60, 80) and masks.dtype == bool
    png = np.asarray(Image.open(out / 'scene_mask_0.png'))
    np.testing.assert_array_equal(png, masks[0].astype(np.uint8) * 255)
    assert np.asarray(Image.open(out / 'scene_overlay.png')).shape == (60, 80, 3)

    ref = SamPredictor(tiny['official'])
    ref.set_image(_image())
    ref_logits, ref_scores, _ = ref.predict(
        np.array([[20.0, 30.0]]), np.array([1]), return_logits=True
    )
    best = int(ref_scores.argmax())
    # mmsam's model and the official one round differently: a pixel whose logit is at the
    # threshold may flip (on one CPU or another), no other
    assert_masks_match_logits(masks[0], ref_logits[best])
    meta = json.loads((out / 'scene_masks.json').read_text())
    np.testing.assert_allclose(meta['scores'], [ref_scores[best]], atol=1e-5)
    assert meta['areas'] == [int(masks[0].sum())]  # the area of the mask written

    # two boxes + one background point: two prompts decoded together
    rc = main(
        ['segment', tiny['image'], '--boxes', '0,0,40,60', '40,20,80,60', '--points', '60,10:0']
        + ['--out-dir', str(out), '--save-masks', 'npy', *_model_args(tiny)]
    )
    assert rc == 0
    masks = np.load(out / 'scene_masks.npy')
    ref_logits, _, _ = ref.predict(
        np.array([[60.0, 10.0]]),
        np.array([0]),
        box=np.array([40, 20, 80, 60]),
        multimask_output=False,
        return_logits=True,
    )
    assert masks.shape == (2, 60, 80)
    assert_masks_match_logits(masks[1], ref_logits[0])


def test_segment_bad_input(tiny, tmp_path, capsys):
    out = ['--out-dir', str(tmp_path)]
    assert main(['segment', tiny['image'], *out, *_model_args(tiny)]) == 2
    assert 'give at least one --points' in capsys.readouterr().err
    assert main(['segment', tiny['image'], '--points', '1;2', *out, *_model_args(tiny)]) == 2
    assert "bad point '1;2'" in capsys.readouterr().err
    assert main(['segment', tiny['image'], '--boxes', '5,5,1,1', *out, *_model_args(tiny)]) == 2
    assert 'x2 >= x1' in capsys.readouterr().err
    assert main(['segment', tiny['image'], '--points', '500,5', *out, *_model_args(tiny)]) == 1
    assert 'outside the image (80 wide, 60 high)' in capsys.readouterr().err
    missing = str(tmp_path / 'missing.jpg')
    assert main(['segment', missing, '--points', '1,1', *out, *_model_args(tiny)]) == 1
    assert 'missing.jpg' in capsys.readouterr().err
    assert main(['segment', tiny['image'], '--points', '1,1', '--model', 'sam_vit-bse']) == 1
    assert 'did you mean' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(['segment'])
    assert exc.value.code == 2


def test_weights_from_hub_cache_and_offline_message(tiny, tmp_path, monkeypatch, capsys):
    from mmsam.apis.model_zoo import cached_checkpoint_path

    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    path = cached_checkpoint_path(OFFICIAL_B_URL)
    assert path == str(tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'sam_vit_b_01ec64.pth')
    args = ['segment', tiny['image'], '--points', '20,30', '--out-dir', str(tmp_path / 'o')]

    # nothing cached, no network: one clear line saying where to put the file
    assert main([*args, '--device', 'cpu']) == 1
    err = capsys.readouterr().err
    assert path in err and 'Traceback' not in err

    # a checkpoint where the download would have put it is used without network
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(tiny['official'].state_dict(), path)
    assert main([*args, '--model', tiny['hub_config'], '--device', 'cpu']) == 0
    assert (tmp_path / 'o' / 'scene_overlay.png').is_file()


def test_amg_folder_resume_and_bad_image(tiny, tmp_path, capsys):
    from mmsam.apis import AutomaticMaskGenerator, get_model
    from mmsam.apis.sa1b import decode_sa1b_masks, sa1b_image_id

    data = tmp_path / 'imgs'
    (data / 'sub').mkdir(parents=True)
    Image.fromarray(_image(seed=1)).save(data / 'a.png')
    Image.fromarray(_image(seed=2)[..., 0]).save(data / 'sub' / 'b.png')
    (data / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    out = tmp_path / 'amg'
    amg_opts = ['--points-per-side', '4', '--pred-iou-thresh', '0', '--stability-score-thresh', '0']
    cmd = ['amg', str(data), '--out-dir', str(out), *amg_opts, *_model_args(tiny)]
    assert main(cmd) == 1
    err = capsys.readouterr().err
    assert 'broken.jpg' in err and '2 processed, 0 skipped' in err and '1 failed' in err
    assert (out / 'a.png.overlay.png').is_file()
    assert (out / 'sub' / 'b.png.overlay.png').is_file()

    model = get_model(tiny['config'], pretrained=tiny['checkpoint'])
    records = AutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0
    ).generate(_image(seed=1))
    assert len(records) > 0
    masks = decode_sa1b_masks(str(out / 'a.png.json'))
    assert len(masks) == len(records)
    for got, rec in zip(masks, records):
        np.testing.assert_array_equal(got, rec['segmentation'])
    sa1b = json.loads((out / 'a.png.json').read_text())
    assert sa1b['image']['file_name'] == 'a.png' and sa1b['image']['height'] == 60
    assert sa1b['image']['image_id'] == sa1b_image_id('a.png')

    # resume: done images are skipped, the broken one is reported again
    assert main(cmd) == 1
    assert '0 processed, 2 skipped' in capsys.readouterr().err

    # no mask above the threshold: a valid empty file
    single = ['amg', str(data / 'a.png'), '--out-dir', str(tmp_path / 'none')]
    none = [*single, '--points-per-side', '2', '--pred-iou-thresh', '100', *_model_args(tiny)]
    assert main(none) == 0
    empty = json.loads((tmp_path / 'none' / 'a.png.json').read_text())
    assert empty['annotations'] == [] and empty['image']['width'] == 80


def test_annotate_command(tiny, tmp_path, capsys):
    import mmdet

    det_config = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', 'retinanet', 'retinanet_r18_fpn_1x_coco.py'
    )
    data = tmp_path / 'imgs'
    data.mkdir()
    Image.fromarray(_image(seed=3)).save(data / 'x.png')
    (data / 'y.png').write_bytes(b'')
    options = [
        'model.test_cfg.score_thr=0',
        'model.test_cfg.max_per_img=3',
        'test_dataloader.dataset.pipeline.1.scale=(96,96)',
    ]
    rc = main(
        ['annotate', str(data), '--det-model', det_config, '--det-cfg-options', *options]
        + ['--conf', '0', '--out-dir', str(tmp_path / 'ann'), *_model_args(tiny)]
    )
    captured = capsys.readouterr()
    assert rc == 1 and 'y.png' in captured.err and 'empty' in captured.err
    coco = json.loads((tmp_path / 'ann' / 'annotations.json').read_text())
    assert [im['file_name'] for im in coco['images']] == ['x.png']
    assert len(coco['categories']) == 80  # COCO classes of a detector without a checkpoint
    assert 0 < len(coco['annotations']) <= 3


def test_convert_command(tiny, tmp_path, capsys):
    from mmsam.apis import get_model

    dst = tmp_path / 'converted.pth'
    assert main(['convert', tiny['checkpoint'], str(dst)]) == 0
    assert 'official layout' in capsys.readouterr().out
    state = torch.load(dst, weights_only=True)['state_dict']
    assert any(k.startswith('backbone.layers.0.') for k in state)
    model = get_model(tiny['config'], pretrained=str(dst))
    ref = tiny['official'].state_dict()
    torch.testing.assert_close(
        model.mask_decoder.iou_token.weight, ref['mask_decoder.iou_token.weight']
    )
    assert main(['convert', str(tmp_path / 'nope.pth'), str(dst)]) == 1
    assert 'nope.pth' in capsys.readouterr().err


def test_demo_scripts_run_as_programs(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'demo'
    argv = [tiny['image'], '--points', '20,30', '--out-dir', str(out), *_model_args(tiny)]
    monkeypatch.setattr(sys, 'argv', ['image_demo.py', *argv])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(osp.join(REPO, 'demo', 'image_demo.py'), run_name='__main__')
    assert exc.value.code == 0
    assert (out / 'scene_overlay.png').is_file()
    monkeypatch.setattr(sys, 'argv', ['amg_demo.py', '-h'])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(osp.join(REPO, 'demo', 'amg_demo.py'), run_name='__main__')
    assert exc.value.code == 0 and '--points-per-side' in capsys.readouterr().out


def test_bundled_demo_image():
    from mmsam.apis.image_io import load_image

    path = osp.join(REPO, 'demo', 'demo.jpg')
    assert os.path.getsize(path) < 150 * 1024
    assert load_image(path).shape == (300, 451, 3)


@pytest.mark.slow
@pytest.mark.full_size
def test_default_model_from_hub_cache(tmp_path, monkeypatch, capsys):
    """`make demo`'s command with a random ViT-B where the official download would be."""
    from mmsam.apis.model_zoo import cached_checkpoint_path

    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    path = cached_checkpoint_path(OFFICIAL_B_URL)
    os.makedirs(osp.dirname(path))
    official = build_official_sam('base', img_size=1024, window_size=14, seed=0, randomize=False)
    torch.save(official.state_dict(), path)
    del official
    out = tmp_path / 'demo'
    image = osp.join(REPO, 'demo', 'demo.jpg')
    rc = main(['segment', image, '--points', '260,170', '--out-dir', str(out), '--device', 'cpu'])
    assert rc == 0, capsys.readouterr().err
    masks = np.load(out / 'demo_masks.npy')
    assert masks.shape == (1, 300, 451)


def _make_demo_command() -> list:
    """The command ``make demo`` runs after the set-up, as make expands it."""
    out = subprocess.run(
        ['make', '--no-print-directory', '-n', 'demo', f'VENV={osp.dirname(sys.executable)}/..'],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    line = out.splitlines()[-1]
    assert 'demo/image_demo.py' in line, out
    return shlex.split(line)


def test_make_demo_uses_mobile_sam_from_hub_cache(tmp_path, monkeypatch):
    """`make demo` segments the photo with MobileSAM (the lightest model), whose official
    checkpoint is looked up in torch's hub cache; the mask is the reference MobileSAM's."""
    pytest.importorskip('mobile_sam')
    from mobile_sam import SamPredictor as MobileSamPredictor

    from mmsam.apis.image_io import load_image
    from mmsam.apis.model_index import get_model_info
    from mmsam.apis.model_zoo import cached_checkpoint_path
    from mmsam.testing.mobile_sam_parity import build_official_mobile_sam

    command = _make_demo_command()
    assert command[command.index('--model') + 1] == MOBILE_SAM
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    path = cached_checkpoint_path(get_model_info(MOBILE_SAM)['Weights'])
    os.makedirs(osp.dirname(path))
    official = build_official_mobile_sam(seed=0)
    torch.save(official.state_dict(), path)
    out = tmp_path / 'demo'
    command[command.index('--out-dir') + 1] = str(out)
    run = subprocess.run([*command, '--device', 'cpu'], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    masks = np.load(out / 'demo_masks.npy')
    assert masks.shape == (1, 300, 451) and (out / 'demo_overlay.png').is_file()

    predictor = MobileSamPredictor(official)
    predictor.set_image(load_image(osp.join(REPO, 'demo', 'demo.jpg')))
    point = [float(v) for v in command[command.index('--points') + 1].split(',')]
    # one point is ambiguous: three candidates, the best by predicted IoU is kept
    ref, scores, _ = predictor.predict(np.array([point]), np.array([1]), multimask_output=True)
    agree = (masks[0] == ref[scores.argmax()]).mean()
    assert agree > 0.999, agree
