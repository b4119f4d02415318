"""auto_annotate: random RetinaNet + tiny random SAM write a COCO file that CocoDataset loads.

Every random model and input is seeded right before it is built. Polygon output is
checked on fixed masks (a predictor that serves them), so what it checks does not hang
on what a random SAM happens to segment on a given CPU.
"""

import json
import logging
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmsam.apis.image_io import load_image
from mmsam.apis.predictor import SAMPredictor
from mmsam.cli.annotate import auto_annotate
from mmsam.structures.rle import coco_rle_to_mask
from mmsam.testing.parity import randomize_parameters, sam_model_cfg

CLASSES = ('cat', 'dog', 'bird')


def _write_detector(tmp_path):
    """A RetinaNet-R18 config (from mmdet's package configs) and a random checkpoint."""
    import mmdet
    from mmdet.apis import init_detector
    from mmengine.registry import DefaultScope

    base = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', 'retinanet', 'retinanet_r18_fpn_1x_coco.py'
    )
    config = tmp_path / 'det_config.py'
    config.write_text(
        f'_base_ = [{base!r}]\n'
        'model = dict(\n'
        '    backbone=dict(init_cfg=None),\n'
        f'    bbox_head=dict(num_classes={len(CLASSES)}),\n'
        '    test_cfg=dict(nms_pre=50, score_thr=0.0, max_per_img=4),\n'
        ')\n'
        'test_pipeline = [\n'
        "    dict(type='LoadImageFromFile'),\n"
        "    dict(type='Resize', scale=(128, 128), keep_ratio=True),\n"
        "    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', "
        "'img_shape', 'scale_factor')),\n"
        ']\n'
        'test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n'
    )
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):  # init_detector sets a global scope
        model = init_detector(str(config), None, device='cpu')
    checkpoint = tmp_path / 'det.pth'
    torch.save(
        {'state_dict': model.state_dict(), 'meta': {'dataset_meta': {'classes': CLASSES}}},
        checkpoint,
    )
    return str(config), str(checkpoint)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from mmdet.registry import MODELS

    import mmsam.registration  # noqa: F401  (registers the modules)

    tmp = tmp_path_factory.mktemp('annotate')
    torch.manual_seed(0)  # randomize_parameters adds noise to the initial weights
    sam = MODELS.build(sam_model_cfg('tiny', img_size=256, window_size=4))
    randomize_parameters(sam, seed=2)
    config, checkpoint = _write_detector(tmp)
    data = tmp / 'images'
    (data / 'sub').mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(img).save(data / 'rgb.png')
    Image.fromarray(img[..., 0]).save(data / 'sub' / 'gray.png')
    Image.fromarray(np.dstack([img, np.full((48, 64), 128, np.uint8)])).save(data / 'rgba.png')
    Image.fromarray(img[..., 1].astype(np.uint16) * 257).save(data / 'deep16.png')
    pal = Image.fromarray(img).convert('P')
    pal.save(data / 'palette.png')
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(img).save(data / 'rotated.jpg', exif=exif)
    (data / 'broken.jpg').write_text('not an image')
    (data / 'empty.png').write_bytes(b'')
    return dict(config=config, checkpoint=checkpoint, sam=sam, data=data, tmp=tmp)


def _run(setup, out, data=None, sam_model=None, **kwargs):
    return auto_annotate(
        str(data or setup['data']),
        setup['config'],
        sam_model or SAMPredictor(setup['sam']),
        device='cpu',
        output_dir=str(out),
        conf=0.0,
        det_weights=setup['checkpoint'],
        progress=False,
        **kwargs,
    )


def test_coco_file_loads_in_mmdet(setup):
    from mmdet.datasets import CocoDataset
    from mmengine.registry import DefaultScope

    out = setup['tmp'] / 'out'
    result = _run(setup, out)
    assert sorted(osp.basename(p) for p, _ in result.failed) == ['broken.jpg', 'empty.png']
    assert any('not an image' in reason for _, reason in result.failed)
    assert result.num_images == 6 and len(result.done) == 6
    coco = json.loads(Path(result.ann_file).read_text())
    assert [c['name'] for c in coco['categories']] == list(CLASSES)
    assert [c['id'] for c in coco['categories']] == [1, 2, 3]
    names = sorted(im['file_name'] for im in coco['images'])
    assert names == sorted(
        ['deep16.png', 'palette.png', 'rgb.png', 'rgba.png', 'rotated.jpg', 'sub/gray.png']
    )
    rotated = next(im for im in coco['images'] if im['file_name'] == 'rotated.jpg')
    assert (rotated['height'], rotated['width']) == (64, 48)  # EXIF orientation applied
    anns = coco['annotations']
    assert len(anns) == result.num_annotations > 0
    assert len({a['id'] for a in anns}) == len(anns)
    for ann in anns:
        mask = coco_rle_to_mask(ann['segmentation'])
        ys, xs = np.nonzero(mask)
        assert ann['area'] == mask.sum() > 0
        np.testing.assert_allclose(
            ann['bbox'], [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        )
        assert 1 <= ann['category_id'] <= 3 and ann['iscrowd'] == 0 and 0 <= ann['score'] <= 1

    # the mask of an annotation is SAM's mask for the detector's box
    cache = next((out / '.cache').iterdir())
    record = json.loads((cache / 'rgb.png.json').read_text())
    predictor = SAMPredictor(setup['sam'])
    predictor.set_image(load_image(setup['data'] / 'rgb.png'))
    first = record['anns'][0]
    logits, _, _ = predictor.predict(
        box=np.array(first['det_bbox']), multimask_output=False, return_logits=True
    )
    # decoded alone here, with the image's other boxes there: a pixel whose logit sits
    # at the threshold may round either way (batch-size-dependent kernels)
    threshold = setup['sam'].mask_threshold
    near = np.abs(logits[0] - threshold) <= 1e-4
    differ = coco_rle_to_mask(first['segmentation']) != (logits[0] > threshold)
    assert not (differ & ~near).any()

    with DefaultScope.overwrite_default_scope('mmdet'):  # no global scope left behind
        dataset = CocoDataset(
            ann_file=result.ann_file,
            data_prefix=dict(img=str(setup['data']) + '/'),
            metainfo=dict(classes=CLASSES),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            ],
        )
        assert len(dataset) == 6
        index = next(
            i for i in range(6) if dataset.get_data_info(i)['img_path'].endswith('rgb.png')
        )
        sample = dataset[index]
    rgb_anns = [a for a in anns if a['image_id'] == sample['img_id']]
    assert sample['gt_masks'].masks.shape == (len(rgb_anns), 48, 64)
    for got, ann in zip(sample['gt_masks'].masks, rgb_anns):
        np.testing.assert_array_equal(got.astype(bool), coco_rle_to_mask(ann['segmentation']))
    np.testing.assert_array_equal(
        sample['gt_bboxes_labels'], [a['category_id'] - 1 for a in rgb_anns]
    )

    # resume: the done images are skipped, the bad ones tried (and reported) again
    again = _run(setup, out)
    assert again.done == [] and len(again.skipped) == 6 and len(again.failed) == 2
    assert json.loads(Path(again.ann_file).read_text()) == coco


def hard_mask(k: int, h: int, w: int) -> np.ndarray:
    """A mask that pixel-centre contours lose parts of: 1-px lines, a diagonal, holes with
    an island, parts touching at a corner, single pixels, speckle (seeded by ``k``)."""
    mask = np.zeros((h, w), bool)
    mask[2, 2:30] = True  # horizontal 1-px line
    mask[4:40, 1] = True  # vertical 1-px line
    idx = np.arange(12)
    mask[idx + 5, idx + 4] = True  # diagonal 1-px line (8-connected)
    mask[6:22, 20:40] = True
    mask[9:13, 23:28] = False  # a hole
    mask[15:20, 30:38] = False  # a hole with an island
    mask[17, 33] = True
    mask[22:26, 40:44] = True  # touches the square at a corner
    mask[30, 30] = True  # a single pixel
    mask[28:h, 46:w] = np.random.default_rng(k).random((h - 28, w - 46)) < 0.5
    return mask


class HardMaskPredictor(SAMPredictor):
    """A predictor that gives the ``k``-th box of an image :func:`hard_mask` ``(k)``."""

    def set_image(self, image, image_format='RGB'):
        self.hw, self.served = image.shape[:2], 0

    def predict(self, box=None, multimask_output=True, **kwargs):
        n = len(box)
        masks = np.stack([hard_mask(self.served + k, *self.hw) for k in range(n)])[:, None]
        self.served += n
        return masks, np.ones((n, 1), np.float32), np.zeros((n, 1, 4, 4), np.float32)


def _numpy_bbox(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_no_detections_and_polygons(setup, log_records):
    from mmdet.datasets import CocoDataset
    from mmengine.registry import DefaultScope
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO

    sub = setup['data'] / 'sub'  # one image (48 x 64) keeps this test fast
    empty = _run(setup, setup['tmp'] / 'none', data=sub, classes=[])
    coco = json.loads(Path(empty.ann_file).read_text())
    assert coco['annotations'] == [] and [im['file_name'] for im in coco['images']] == ['gray.png']
    assert len(COCO(empty.ann_file).getImgIds()) == 1

    # the polygons decode (pycocotools' annToMask) to exactly the masks, holes and all
    predictor = HardMaskPredictor(setup['sam'])
    poly = _run(setup, setup['tmp'] / 'poly', sub, mask_format='polygon', sam_model=predictor)
    coco = json.loads(Path(poly.ann_file).read_text())
    anns = sorted(coco['annotations'], key=lambda a: a['id'])
    assert 0 < len(anns) <= 4  # the detector's max_per_img
    api = COCO(poly.ann_file)
    for k, ann in enumerate(anns):
        expected = hard_mask(k, 48, 64)
        assert isinstance(ann['segmentation'], list) and ann['segmentation']
        np.testing.assert_array_equal(api.annToMask(ann).astype(bool), expected)
        rle = api.annToRLE(ann)
        assert ann['area'] == mask_api.area(rle) == expected.sum()
        assert ann['bbox'] == mask_api.toBbox(rle).tolist() == _numpy_bbox(expected)
    assert not [r for r in log_records if 'polygons decode' in r.getMessage()]
    with DefaultScope.overwrite_default_scope('mmdet'):  # mmdet's loader reads them too
        dataset = CocoDataset(
            ann_file=poly.ann_file,
            data_prefix=dict(img=str(sub) + '/'),
            metainfo=dict(classes=CLASSES),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            ],
        )
        got = dataset[0]['gt_masks'].masks.astype(bool)
    np.testing.assert_array_equal(got, [hard_mask(k, 48, 64) for k in range(len(anns))])

    # simplified polygons that lose too much: written as RLE, one log line each
    lossy = _run(
        setup,
        setup['tmp'] / 'lossy',
        sub,
        mask_format='polygon',
        sam_model=predictor,
        polygon_tolerance=3.0,
    )
    coco = json.loads(Path(lossy.ann_file).read_text())
    anns = sorted(coco['annotations'], key=lambda a: a['id'])
    fallbacks = [r for r in log_records if 'polygons decode' in r.getMessage()]
    assert len(anns) == len(fallbacks) > 0
    api = COCO(lossy.ann_file)
    for k, (ann, record) in enumerate(zip(anns, fallbacks)):
        expected = hard_mask(k, 48, 64)
        assert isinstance(ann['segmentation'], dict)
        np.testing.assert_array_equal(api.annToMask(ann).astype(bool), expected)
        assert ann['area'] == expected.sum() and ann['bbox'] == _numpy_bbox(expected)
        assert f'gray.png detection {k}' in record.getMessage()
        assert record.levelno == logging.WARNING

    with pytest.raises(ValueError, match='mask_format'):
        _run(setup, setup['tmp'] / 'x', mask_format='bitmap')
    with pytest.raises(ValueError, match='polygon_min_iou'):
        _run(setup, setup['tmp'] / 'x', mask_format='polygon', polygon_min_iou=2.0)
