"""``mmsam segment/annotate --text``: a reduced-size Grounding DINO and a tiny BERT written
here, a tiny random SAM; no download.

The masks are checked against the official ``SamPredictor`` (same weights) on the
detector's boxes, the detections against :func:`mmsam.apis.text_prompts.detect_by_text`
(itself checked against mmdet's own predict in tests/apis/test_text_prompts.py), and the
COCO file through mmdet's ``CocoDataset``.
"""

import json
import os.path as osp

import numpy as np
import pytest
from cli_fixtures import model_args, scene
from PIL import Image

from mmsam.cli import main

pytest.importorskip('transformers')

TEXT = 'car . person . dog'
PHRASES = ['car', 'person', 'dog']
THRESHOLDS = ['--box-threshold', '0', '--text-threshold', '0.75']


@pytest.fixture(scope='module')
def grounding(tmp_path_factory):
    from mmsam.apis.text_prompts import build_grounding_detector
    from mmsam.testing.grounding_dino import write_tiny_grounding_dino

    tmp = tmp_path_factory.mktemp('gdino')
    config, checkpoint, bert = write_tiny_grounding_dino(str(tmp), seed=0)
    detector = build_grounding_detector(config, checkpoint, device='cpu')
    return dict(config=config, checkpoint=checkpoint, bert=bert, detector=detector)


def _det_args(grounding):
    return ['--det-model', grounding['config'], '--det-weights', grounding['checkpoint']]


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if 'error:' in line]
    assert len(lines) == 1 and 'Traceback' not in err, err
    return lines[0]


def _check_masks_against_official(official, image, boxes, masks):
    from segment_anything import SamPredictor

    ref = SamPredictor(official)
    ref.set_image(image)
    for box, mask in zip(boxes, masks):
        logits = ref.predict(box=np.asarray(box), multimask_output=False, return_logits=True)[0]
        differ = (logits[0] > 0) != mask
        assert not differ.any() or np.abs(logits[0][differ]).max() < 1e-4


def test_segment_text_end_to_end(tiny, grounding, tmp_path, capsys):
    from mmsam.apis.image_io import load_image
    from mmsam.apis.text_prompts import detect_by_text

    out = tmp_path / 'out'
    cmd = ['segment', tiny['image'], '--text', TEXT, '--out-dir', str(out), *THRESHOLDS]
    assert main([*cmd, *_det_args(grounding), *model_args(tiny)]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / 'scene_masks.json').read_text())
    image = load_image(tiny['image'])
    boxes, scores, labels = detect_by_text(grounding['detector'], image, PHRASES, 0.0, 0.75)
    assert 0 < len(labels) < grounding['detector'].num_queries
    assert info['phrases'] == PHRASES and info['text'] == TEXT
    np.testing.assert_allclose(info['boxes'], boxes, atol=1e-4)
    np.testing.assert_allclose(info['scores'], scores, atol=1e-6)
    assert info['labels'] == labels.tolist()
    assert info['label_names'] == [PHRASES[i] for i in labels]
    counts = ', '.join(f'{p}: {info["label_names"].count(p)}' for p in PHRASES)
    assert f'{len(labels)} mask(s) for 3 phrase(s) ({counts})' in printed
    masks = np.load(out / 'scene_masks.npy')
    assert masks.shape == (len(labels), 60, 80) and masks.dtype == bool
    assert info['areas'] == [int(m.sum()) for m in masks]
    for i, mask in enumerate(masks):
        png = np.array(Image.open(out / f'scene_mask_{i}.png')) > 0
        np.testing.assert_array_equal(png, mask)
    assert (out / 'scene_overlay.png').is_file()
    _check_masks_against_official(tiny['official'], image, info['boxes'], masks)

    # no match: an answer (exit 0), empty lists, and the earlier run's mask files removed
    cmd = ['segment', tiny['image'], '--text', 'zebra', '--out-dir', str(out)]
    assert main([*cmd, '--box-threshold', '1', *_det_args(grounding), *model_args(tiny)]) == 0
    assert '0 mask(s) for 1 phrase(s) (zebra: 0)' in capsys.readouterr().out
    info = json.loads((out / 'scene_masks.json').read_text())
    assert info['phrases'] == ['zebra'] and info['boxes'] == [] and info['label_names'] == []
    assert np.load(out / 'scene_masks.npy').shape == (0, 60, 80)
    assert not (out / 'scene_mask_0.png').exists()


def test_annotate_text_coco_file_loads_in_mmdet(tiny, grounding, tmp_path, capsys):
    from mmdet.datasets import CocoDataset
    from mmengine.registry import DefaultScope

    from mmsam.apis.image_io import load_image
    from mmsam.apis.text_prompts import detect_by_text
    from mmsam.structures.rle import coco_rle_to_mask

    data = tmp_path / 'data'
    data.mkdir()
    for i in range(2):
        Image.fromarray(scene(seed=i)).save(data / f'{i}.png')
    out = tmp_path / 'out'
    cmd = ['annotate', str(data), '--text', 'car . person . dog .', '--out-dir', str(out)]
    assert main([*cmd, *THRESHOLDS, *_det_args(grounding), *model_args(tiny)]) == 0
    ann_file = str(out / 'annotations.json')
    coco = json.loads(open(ann_file).read())
    assert coco['categories'] == [dict(id=i + 1, name=p) for i, p in enumerate(PHRASES)]
    assert [im['file_name'] for im in coco['images']] == ['0.png', '1.png']
    for im in coco['images']:
        rgb = load_image(str(data / im['file_name']))
        boxes, scores, labels = detect_by_text(grounding['detector'], rgb, PHRASES, 0.0, 0.75)
        anns = [a for a in coco['annotations'] if a['image_id'] == im['id']]
        assert len(anns) == len(labels) > 0  # every box gets a non-empty mask here
        assert [a['category_id'] for a in anns] == (labels + 1).tolist()
        np.testing.assert_allclose([a['score'] for a in anns], scores, atol=1e-6)
        masks = np.stack([coco_rle_to_mask(a['segmentation']) for a in anns])
        _check_masks_against_official(tiny['official'], rgb, boxes, masks)

    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = CocoDataset(
            ann_file=ann_file,
            data_prefix=dict(img=str(data) + '/'),
            metainfo=dict(classes=tuple(PHRASES)),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            ],
        )
        assert dataset.metainfo['classes'] == tuple(PHRASES)
        assert len(dataset) == 2
        sample = dataset[0]
    anns = [a for a in coco['annotations'] if a['image_id'] == sample['img_id']]
    np.testing.assert_array_equal(sample['gt_bboxes_labels'], [a['category_id'] - 1 for a in anns])
    assert sample['gt_masks'].masks.shape == (len(anns), 60, 80)

    # the same text resumes; another text is another job (categories follow the text)
    capsys.readouterr()
    assert main([*cmd, *THRESHOLDS, *_det_args(grounding), *model_args(tiny)]) == 0
    assert '0 processed, 2 skipped' in capsys.readouterr().out
    cmd[3] = 'dog . zebra'
    assert main([*cmd, '--box-threshold', '1', *_det_args(grounding), *model_args(tiny)]) == 0
    coco = json.loads(open(ann_file).read())
    assert [c['name'] for c in coco['categories']] == ['dog', 'zebra']
    assert coco['annotations'] == [] and len(coco['images']) == 2


@pytest.mark.parametrize(
    'args, message',
    [
        (['segment', 'IMG', '--text', 'car', '--points', '5,5'], '--text cannot be combined'),
        (['segment', 'IMG', '--text', ' . . '], 'bad --text: no phrase'),
        (['segment', 'IMG', '--text', 'car', '--box-threshold', '2'], 'expected [0, 1]'),
        (['annotate', 'DATA'], 'give --det-model'),
        (['annotate', 'DATA', '--text', 'car', '--classes', '0'], '--classes cannot be'),
    ],
)
def test_usage_errors_exit_2(tiny, tmp_path, capsys, args, message):
    (tmp_path / 'data').mkdir()
    args = [a.replace('IMG', tiny['image']).replace('DATA', str(tmp_path / 'data')) for a in args]
    try:  # argparse's own checks exit from inside main
        code = main([*args, '--out-dir', str(tmp_path / 'out'), *model_args(tiny)])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert message in _one_line_error(capsys.readouterr().err)


def test_errors_exit_1_in_one_line(tiny, grounding, tmp_path, capsys):
    cmd = ['segment', tiny['image'], '--text', 'car', '--out-dir', str(tmp_path / 'out')]
    missing = str(tmp_path / 'no_bert')
    args = [*cmd, *_det_args(grounding), '--text-encoder', missing, *model_args(tiny)]
    assert main(args) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert 'no_bert is not a BERT folder' in line and '--text-encoder' in line
    # a detector that is not a Grounding DINO
    args = [*cmd, '--det-model', tiny['config'], *model_args(tiny)]
    assert main(args) == 1
    assert 'must be a Grounding DINO' in _one_line_error(capsys.readouterr().err)
    assert not osp.exists(tmp_path / 'out' / 'scene_masks.json')
