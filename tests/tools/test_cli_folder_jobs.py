"""Folder jobs never lose work or mix runs: a rerun gives what a fresh run gives.

``mmsam amg`` and ``mmsam annotate`` on a folder with name clashes (``photo.jpg`` and
``photo.png``), after adding an image, after changing the options or the detector
config, and with the output folder inside the input folder, must write exactly what
a fresh run into an empty output folder writes.
"""

import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from cli_fixtures import model_args, scene
from PIL import Image

from mmsam.apis.sa1b import sa1b_image_id
from mmsam.cli import main

AMG = ['--points-per-side', '3', '--pred-iou-thresh', '0', '--stability-score-thresh', '0']


def _files(folder):
    """Relative path -> bytes of every file under ``folder`` (hidden resume keys aside)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith('.')]
        for name in filenames:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, folder)] = f.read()
    return out


def _clashing_folder(root):
    """``photo.jpg``, ``photo.png`` and ``sub/photo.png``: three images, one stem."""
    (root / 'sub').mkdir(parents=True)
    Image.fromarray(scene(seed=1)).save(root / 'photo.jpg', quality=95)
    Image.fromarray(scene(seed=2)[::-1].copy()).save(root / 'photo.png')
    Image.fromarray(scene(seed=3)[:, ::-1].copy()).save(root / 'sub' / 'photo.png')
    return root


def test_amg_rerun_gives_a_fresh_runs_outputs(tiny, tmp_path, monkeypatch, capsys):
    data = _clashing_folder(tmp_path / 'data')
    monkeypatch.chdir(data)
    # `mmsam amg .`: the default output folder outputs/amg lies inside the input folder
    assert main(['amg', '.', *AMG, *model_args(tiny)]) == 0
    assert '3 processed, 0 skipped' in capsys.readouterr().out
    out = data / 'outputs' / 'amg'
    names = sorted(_files(out))
    assert names == [
        'photo.jpg.json',
        'photo.jpg.overlay.png',
        'photo.png.json',
        'photo.png.overlay.png',
        osp.join('sub', 'photo.png.json'),
        osp.join('sub', 'photo.png.overlay.png'),
    ]
    ids = {}
    for rel in ('photo.jpg', 'photo.png', 'sub/photo.png'):
        image = json.loads((out / (rel + '.json')).read_text())['image']
        assert image['file_name'] == rel
        ids[rel] = image['image_id']
        assert ids[rel] == sa1b_image_id(rel)
    assert len(set(ids.values())) == 3

    # a rerun after adding an image: only the new one is processed, the outputs are
    # not read as input (no outputs/amg/outputs/amg/...), and the ids stay
    Image.fromarray(scene(seed=4)).save(data / 'added.png')
    assert main(['amg', '.', *AMG, *model_args(tiny)]) == 0
    assert '1 processed, 3 skipped' in capsys.readouterr().out
    assert not (out / 'outputs').exists()
    for rel, image_id in ids.items():
        assert json.loads((out / (rel + '.json')).read_text())['image']['image_id'] == image_id

    # a fresh run: the same images (without the outputs inside), an empty output folder
    images = tmp_path / 'images'
    shutil.copytree(data, images, ignore=shutil.ignore_patterns('outputs'))
    fresh = tmp_path / 'fresh'
    assert main(['amg', str(images), '--out-dir', str(fresh), *AMG, *model_args(tiny)]) == 0
    capsys.readouterr()
    assert _files(out) == _files(fresh)

    # other options: every image is redone, as a fresh run with those options
    other = ['--points-per-side', '2', *AMG[2:]]
    assert main(['amg', '.', *other, '--no-overlay', *model_args(tiny)]) == 0
    assert '4 processed, 0 skipped' in capsys.readouterr().out
    fresh_other = tmp_path / 'fresh_other'
    cmd = ['amg', str(images), '--out-dir', str(fresh_other), *other, '--no-overlay']
    assert main([*cmd, *model_args(tiny)]) == 0
    assert _files(out) == _files(fresh_other)
    assert not any(name.endswith('.png') for name in _files(out))

    # an edited image is redone
    Image.fromarray(scene(seed=5)).save(data / 'added.png')
    assert main(['amg', '.', *other, '--no-overlay', *model_args(tiny)]) == 0
    assert '1 processed, 3 skipped' in capsys.readouterr().out


def test_amg_refuses_the_input_folder_as_output_and_an_empty_folder(tiny, tmp_path, capsys):
    data = _clashing_folder(tmp_path / 'data')
    assert main(['amg', str(data), '--out-dir', str(data), *AMG, *model_args(tiny)]) == 1
    err = capsys.readouterr().err
    assert 'is the input folder' in err and 'Traceback' not in err

    empty = tmp_path / 'empty'
    (empty / 'sub').mkdir(parents=True)
    (empty / 'notes.txt').write_text('no image here')
    out = tmp_path / 'out'
    assert main(['amg', str(empty), '--out-dir', str(out), *model_args(tiny)]) == 1
    err = capsys.readouterr().err
    assert f'no images found in {empty}' in err and len(err.strip().splitlines()) == 1


def test_output_folder_is_checked_before_any_work(tiny, tmp_path, capsys):
    data = _clashing_folder(tmp_path / 'data')
    a_file = tmp_path / 'taken'
    a_file.write_text('a file, not a folder')
    # weights that do not exist: the output folder is reported first, before loading
    bad_weights = ['--weights', str(tmp_path / 'missing.pth')]
    for out in (a_file, a_file / 'below'):
        for cmd in (
            ['amg', str(data), '--out-dir', str(out), *model_args(tiny), *bad_weights],
            ['segment', str(data / 'photo.png'), '--points', '5,5', '--out-dir', str(out)]
            + [*model_args(tiny), *bad_weights],
        ):
            assert main(cmd) == 1
            err = capsys.readouterr().err
            assert 'is a file' in err and 'missing.pth' not in err, err
            assert 'Traceback' not in err and 'File exists' not in err


@pytest.mark.skipif(hasattr(os, 'geteuid') and os.geteuid() == 0, reason='root writes anywhere')
def test_unwritable_output_folder_is_found_before_any_work(tiny, tmp_path, capsys):
    data = _clashing_folder(tmp_path / 'data')
    locked = tmp_path / 'locked'
    locked.mkdir()
    locked.chmod(0o500)
    try:
        cmd = ['amg', str(data), '--out-dir', str(locked), *model_args(tiny)]
        assert main([*cmd, '--weights', str(tmp_path / 'missing.pth')]) == 1
        err = capsys.readouterr().err
        assert 'not writable' in err and 'missing.pth' not in err
    finally:
        locked.chmod(0o700)


# ------------------------------------------------------------------ annotate
def _detector(tmp_path, max_per_img):
    """A RetinaNet-R18 config (mmdet's package config) with 3 classes; a seeded checkpoint."""
    import mmdet
    from mmdet.apis import init_detector
    from mmengine.registry import DefaultScope

    base = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', 'retinanet', 'retinanet_r18_fpn_1x_coco.py'
    )
    config = tmp_path / 'det_config.py'
    config.write_text(
        f'_base_ = [{base!r}]\n'
        'model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=3),\n'
        f'             test_cfg=dict(nms_pre=50, score_thr=0.0, max_per_img={max_per_img}))\n'
    )
    checkpoint = tmp_path / 'det.pth'
    if not checkpoint.exists():
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = init_detector(str(config), None, device='cpu')
        meta = {'dataset_meta': {'classes': ('cat', 'dog', 'bird')}}
        torch.save({'state_dict': model.state_dict(), 'meta': meta}, checkpoint)
    return str(config), str(checkpoint)


def test_annotate_rerun_gives_a_fresh_runs_outputs(tiny, tmp_path, capsys):
    data = _clashing_folder(tmp_path / 'data')
    config, checkpoint = _detector(tmp_path, max_per_img=4)

    def annotate(out):
        cmd = ['annotate', str(data), '--det-model', config, '--det-weights', checkpoint]
        cmd += ['--det-cfg-options', 'test_dataloader.dataset.pipeline.1.scale=(96,96)']
        assert main([*cmd, '--conf', '0', '--out-dir', str(out), *model_args(tiny)]) == 0
        capsys.readouterr()
        return json.loads((out / 'annotations.json').read_text())

    inside = data / 'annotations'  # the output folder inside the input folder
    first = annotate(inside)
    names = [im['file_name'] for im in first['images']]
    assert names == ['photo.jpg', 'photo.png', 'sub/photo.png']
    assert 0 < len(first['annotations']) <= 12

    # the detector config changes (fewer detections per image): results are redone
    _detector(tmp_path, max_per_img=1)
    rerun = annotate(inside)
    fresh = annotate(tmp_path / 'fresh')
    assert rerun == fresh
    assert len(fresh['annotations']) <= 3 < len(first['annotations'])

    # an image is added: the rerun equals a fresh run, the outputs are not input
    Image.fromarray(scene(seed=4)).save(data / 'added.png')
    assert annotate(inside) == annotate(tmp_path / 'fresh2')


def test_segment_rerun_removes_stale_mask_files(tiny, tmp_path, capsys):
    out = tmp_path / 'seg'
    base = ['segment', tiny['image'], '--points', '20,30', '--out-dir', str(out)]
    assert main([*base, '--multimask', *model_args(tiny)]) == 0
    assert sorted(p.name for p in out.glob('scene_mask*')) == [
        'scene_mask_0.png',
        'scene_mask_1.png',
        'scene_mask_2.png',
        'scene_masks.json',
        'scene_masks.npy',
    ]
    (out / 'scene_mask_notes.txt').write_text('not ours: kept')
    # one mask now: the earlier run's masks 1 and 2 are gone
    assert main([*base, *model_args(tiny)]) == 0
    names = sorted(p.name for p in out.glob('scene_mask*'))
    assert names == [
        'scene_mask_0.png',
        'scene_mask_notes.txt',
        'scene_masks.json',
        'scene_masks.npy',
    ]
    # png only: the earlier .npy is gone too
    assert main([*base, '--save-masks', 'png', *model_args(tiny)]) == 0
    names = sorted(p.name for p in out.glob('scene_mask*'))
    assert names == ['scene_mask_0.png', 'scene_mask_notes.txt', 'scene_masks.json']
    capsys.readouterr()


def test_annotate_polygon_options_reach_the_writer(tiny, tmp_path, capsys):
    """--mask-format polygon with --polygon-min-iou / --polygon-tolerance: exact polygons
    decode (pycocotools) to the RLE run's masks; an IoU bar of 1 with simplified outlines
    falls back to RLE; bad values are usage errors (exit 2)."""
    from pycocotools import mask as mask_api

    data = _clashing_folder(tmp_path / 'data')
    config, checkpoint = _detector(tmp_path, max_per_img=2)

    def annotate(out, *extra):
        cmd = ['annotate', str(data), '--det-model', config, '--det-weights', checkpoint]
        cmd += ['--det-cfg-options', 'test_dataloader.dataset.pipeline.1.scale=(96,96)']
        assert main([*cmd, '--conf', '0', '--out-dir', str(out), *extra, *model_args(tiny)]) == 0
        capsys.readouterr()
        return json.loads((out / 'annotations.json').read_text())

    def decoded(ann, image):
        seg = ann['segmentation']
        if isinstance(seg, list):
            seg = mask_api.merge(mask_api.frPyObjects(seg, image['height'], image['width']))
        return mask_api.decode(seg)

    rle = annotate(tmp_path / 'rle')
    exact = annotate(tmp_path / 'exact', '--mask-format', 'polygon')
    assert rle['annotations'] and len(exact['annotations']) == len(rle['annotations'])
    images = {im['id']: im for im in rle['images']}
    for a, b in zip(rle['annotations'], exact['annotations']):
        assert isinstance(b['segmentation'], list)
        image = images[a['image_id']]
        assert np.array_equal(decoded(a, image), decoded(b, image))
    rough = annotate(
        tmp_path / 'rough',
        '--mask-format',
        'polygon',
        '--polygon-tolerance',
        '3',
        '--polygon-min-iou',
        '1',
    )
    # simplified outlines rarely decode exactly: those masks are kept as RLE
    assert any(isinstance(a['segmentation'], dict) for a in rough['annotations'])
    for bad in (['--polygon-min-iou', '1.5'], ['--polygon-tolerance', '-1']):
        with pytest.raises(SystemExit) as info:
            main(['annotate', str(data), '--det-model', config, *bad])
        assert info.value.code == 2
