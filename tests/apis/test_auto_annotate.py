"""auto_annotate: random RetinaNet + tiny random SAM write a COCO file that CocoDataset loads."""

import json
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmsam.apis.auto_annotate import auto_annotate
from mmsam.apis.image_io import load_image
from mmsam.apis.predictor import SAMPredictor
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

    import mmsam  # noqa: F401

    tmp = tmp_path_factory.mktemp('annotate')
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


def _run(setup, out, data=None, **kwargs):
    return auto_annotate(
        str(data or setup['data']),
        setup['config'],
        SAMPredictor(setup['sam']),
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
    masks, _, _ = predictor.predict(box=np.array(first['det_bbox']), multimask_output=False)
    np.testing.assert_array_equal(coco_rle_to_mask(first['segmentation']), masks[0])

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


def test_no_detections_and_polygons(setup):
    from pycocotools.coco import COCO

    sub = setup['data'] / 'sub'  # one image keeps this test fast
    empty = _run(setup, setup['tmp'] / 'none', data=sub, classes=[])
    coco = json.loads(Path(empty.ann_file).read_text())
    assert coco['annotations'] == [] and [im['file_name'] for im in coco['images']] == ['gray.png']
    assert len(COCO(empty.ann_file).getImgIds()) == 1

    poly = _run(setup, setup['tmp'] / 'poly', data=sub, mask_format='polygon', max_det=2)
    coco = json.loads(Path(poly.ann_file).read_text())
    assert 0 < len(coco['annotations']) <= 2
    api = COCO(poly.ann_file)
    for ann in coco['annotations']:
        assert isinstance(ann['segmentation'], list) and ann['segmentation']
        assert api.annToMask(ann).sum() > 0
    with pytest.raises(ValueError, match='mask_format'):
        _run(setup, setup['tmp'] / 'x', mask_format='bitmap')
