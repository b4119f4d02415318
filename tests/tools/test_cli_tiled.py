"""``mmsam segment`` / ``mmsam amg`` with ``--tile-size``: the command line runs the
library's TiledSegmenter with its options, reads the TIFF tile by tile and writes RLE JSON."""

import json

import tifffile
import torch
from cli_fixtures import model_args, scene

from mmsam.apis.mask_generator import AutomaticMaskGenerator
from mmsam.apis.model_zoo import get_model
from mmsam.apis.predictor import SAMPredictor
from mmsam.apis.tiled_segmentation import TiledSegmenter
from mmsam.cli import main

TILE = ['--tile-size', '256', '--tile-overlap', '64']
AMG = ['--points-per-side', '2', '--pred-iou-thresh', '0', '--stability-score-thresh', '0']


def _big_tiff(path):
    image = scene(150, 400, seed=1)  # two tiles of 256 side by side
    tifffile.imwrite(path, image, tile=(64, 64), compression='zlib')
    return image


def _model(tiny):
    torch.manual_seed(0)
    return get_model(tiny['config'], pretrained=tiny['checkpoint'], device='cpu')


def test_segment_tiled_writes_the_apis_records(tiny, tmp_path, capsys):
    path = str(tmp_path / 'big.tif')
    image = _big_tiff(path)
    out = tmp_path / 'seg'
    args = ['segment', path, '--points', '30,40', '--boxes', '100,20,390,60', '10,90,60,140']
    assert main([*args, '--out-dir', str(out), *TILE, *model_args(tiny)]) == 0
    printed = capsys.readouterr().out
    assert 'read lazily with tifffile' in printed and '2 mask(s)' in printed
    data = json.loads((out / 'big_rle.json').read_text())
    assert data['image'] == {'file_name': path, 'height': 150, 'width': 400}
    assert data['tiling']['tile_size'] == 256 and data['tiling']['tile_overlap'] == 64
    # two boxes: two prompts, each with the point (the prompts of mmsam segment)
    prompts = [
        {'point_coords': [[30.0, 40.0]], 'point_labels': [1], 'box': box}
        for box in ([100, 20, 390, 60], [10, 90, 60, 140])
    ]
    expected = TiledSegmenter(256, 64).segment_prompts(image, SAMPredictor(_model(tiny)), prompts)
    assert data['annotations'] == json.loads(json.dumps(expected))
    assert len(data['annotations'][0]['tiles']) > 1  # the first box spans tiles


def test_amg_tiled_writes_sa1b_and_resumes(tiny, tmp_path, capsys):
    data = tmp_path / 'data'
    data.mkdir()
    image = _big_tiff(str(data / 'big.tif'))
    out = tmp_path / 'amg'
    base = ['amg', str(data), '--out-dir', str(out), *AMG, *model_args(tiny)]
    assert main([*base, *TILE]) == 0
    assert '1 processed, 0 skipped' in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ['.resume', 'big.tif.json']  # no overlay
    written = json.loads((out / 'big.tif.json').read_text())
    generator = AutomaticMaskGenerator(
        _model(tiny),
        points_per_side=2,
        pred_iou_thresh=0,
        stability_score_thresh=0,
        output_mode='coco_rle',
    )
    records = TiledSegmenter(256, 64).generate(image, generator)
    assert len(records) == len(written['annotations']) > 0
    for record, ann in zip(records, written['annotations']):
        assert ann['segmentation'] == record['segmentation']
        assert ann['bbox'] == record['bbox'] and ann['area'] == record['area']
    assert written['image']['height'] == 150 and written['image']['width'] == 400
    # same options: skipped; another tiling: redone
    assert main([*base, *TILE]) == 0
    assert '0 processed, 1 skipped' in capsys.readouterr().out
    assert main([*base, '--tile-size', '256', '--tile-overlap', '80']) == 0
    assert '1 processed, 0 skipped' in capsys.readouterr().out


def test_tile_options_are_checked_before_loading(tiny, tmp_path, capsys):
    path = str(tmp_path / 'big.tif')
    _big_tiff(path)
    seg = ['segment', path, '--points', '5,5', '--out-dir', str(tmp_path / 'o')]
    assert main([*seg, '--tile-size', '128', '--tile-overlap', '128', *model_args(tiny)]) == 2
    assert 'tile_overlap' in capsys.readouterr().err
    assert main([*seg, *TILE, '--multimask', *model_args(tiny)]) == 2
    assert '--multimask' in capsys.readouterr().err
    assert main([*seg, *TILE, '--text', 'car', *model_args(tiny)]) == 2
    assert '--text' in capsys.readouterr().err
