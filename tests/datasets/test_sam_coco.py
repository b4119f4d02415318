"""SAM's COCO dataset: the audit of bad annotations, prompts from GT and from detections."""

import json

import numpy as np
import pytest
import torch
from mmdet.registry import DATASETS, TRANSFORMS
from mmengine.registry import DefaultScope
from scipy import ndimage

import mmsam.datasets  # noqa: F401  (registers the datasets and transforms)
import mmsam.evaluation  # noqa: F401
from mmsam.datasets import classify_annotation
from mmsam.testing.coco_fixture import (
    BAD_ENTRY_COUNTS,
    UNDECLARED_CATEGORY_ID,
    make_coco_fixture,
)

LOAD = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
]


@pytest.fixture(autouse=True)
def mmdet_scope():
    """mmdet's scope for each test, without leaving a global default scope behind."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_coco_fixture(str(tmp_path_factory.mktemp('coco')), bad_entries=True)


def _dataset(data, pipeline, **kwargs):
    cfg = dict(
        type='SAMCocoDataset',
        data_root=data['data_root'],
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=pipeline,
    )
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def test_audit_counts_every_dropped_or_ignored_annotation(data, monkeypatch):
    from mmsam.datasets import sam_coco

    logged = []
    monkeypatch.setattr(sam_coco, 'print_log', lambda msg, *a, **k: logged.append(msg))
    dataset = _dataset(data, [*LOAD, dict(type='BoxPromptsFromGT'), dict(type='PackSAMInputs')])
    assert dict(dataset.audit) == BAD_ENTRY_COUNTS
    assert [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))] == [101, 102, 103, 201]
    assert dataset.metainfo['ann_file'] == data['ann_file']
    summary = logged[-1]
    assert '4 images, 9 instances to prompt' in summary
    assert '1 crowd annotations' in summary and '1 annotations without a segmentation' in summary
    assert any('missing.png' in m for m in logged)
    # image 102: 3 shapes (one uncompressed RLE), the crowd and the segmentation-less one
    sample = dataset[1]['data_samples']
    gt = sample.gt_instances
    assert len(gt) == 3 and gt.masks.masks.shape == (3, 140, 90)
    assert gt.bboxes.shape == (3, 4) and gt.bboxes.dtype == torch.float32


def test_classify_annotation_follows_mmdet_order():
    ann = dict(bbox=[0, 0, 5, 5], area=25, category_id=1, iscrowd=0, segmentation=[[0] * 6])
    assert classify_annotation(ann, 10, 10, [1]) == ''
    assert classify_annotation(dict(ann, ignore=1), 10, 10, [1]) == 'ignore'
    assert classify_annotation(dict(ann, bbox=[20, 20, 5, 5]), 10, 10, [1]) == 'outside'
    assert classify_annotation(dict(ann, area=0), 10, 10, [1]) == 'degenerate'
    assert classify_annotation(ann, 10, 10, [2]) == 'category'
    assert classify_annotation(dict(ann, iscrowd=1), 10, 10, [1]) == 'crowd'
    assert classify_annotation(dict(ann, segmentation=[[1, 2, 3, 4]]), 10, 10, [1]) == 'bad_polygon'
    assert classify_annotation(dict(ann, segmentation={'counts': 5}), 10, 10, [1]) == 'bad_rle'


def test_point_prompts_are_the_farthest_points_from_the_boundary(data):
    dataset = _dataset(data, [*LOAD, dict(type='PointPromptsFromGT'), dict(type='PackSAMInputs')])
    for index in range(3):
        gt = dataset[index]['data_samples'].gt_instances
        assert gt.point_labels.tolist() == [[1]] * len(gt)
        for mask, point in zip(gt.masks.masks, gt.points[:, 0]):
            dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
            row, col = np.unravel_index(np.argmax(dist), dist.shape)
            assert point.tolist() == [col, row]


def test_pack_needs_a_prompt_and_prompts_need_their_inputs(data):
    pack = TRANSFORMS.build(dict(type='PackSAMInputs'))
    with pytest.raises(KeyError, match='no prompts'):
        pack(dict(img=np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(KeyError, match='gt_masks'):
        TRANSFORMS.build(dict(type='PointPromptsFromGT'))(dict(img=np.zeros((4, 4, 3))))
    with pytest.raises(KeyError, match='gt_bboxes'):
        TRANSFORMS.build(dict(type='BoxPromptsFromGT'))(dict(img=np.zeros((4, 4, 3))))
    with pytest.raises(KeyError, match='det_prompt_file'):
        TRANSFORMS.build(dict(type='DetectorBoxPrompts'))(dict(img=np.zeros((4, 4, 3))))
    with pytest.raises(ValueError, match='max_per_img'):
        TRANSFORMS.build(dict(type='DetectorBoxPrompts', max_per_img=0))


def _write_detections(path, coco_json):
    anns = [a for a in coco_json['annotations'] if a['image_id'] in (101, 103)]
    dets = [
        dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'], score=s)
        for a, s in zip(anns, np.linspace(0.95, 0.3, len(anns)).tolist())
        if a['category_id'] <= 3 and a['area'] > 0
    ]
    dets += [
        # not a category of the file (999 is one: declared, without annotations)
        dict(image_id=101, category_id=UNDECLARED_CATEGORY_ID, bbox=[1, 1, 5, 5], score=0.9),
        dict(image_id=101, category_id=1, bbox=[1, 1, 0, 5], score=0.9),  # empty box
        dict(image_id=101, category_id=1, bbox=[1, 1, 5, 5], score=0.01),  # below thr
        dict(image_id=555, category_id=1, bbox=[1, 1, 5, 5], score=0.9),  # unknown image
    ]
    with open(path, 'w') as f:
        json.dump(dets, f)
    return dets


def test_detector_boxes_become_prompts_and_are_scored_by_detection(data, tmp_path, monkeypatch):
    from mmdet.registry import METRICS, MODELS

    from mmsam.datasets import sam_coco
    from mmsam.testing.parity import (
        assert_masks_match_logits,
        build_official_sam,
        official_to_mmsam,
    )

    with open(data['ann_file']) as f:
        coco_json = json.load(f)
    det_file = tmp_path / 'dets.bbox.json'
    dets = _write_detections(det_file, coco_json)
    logged = []
    monkeypatch.setattr(sam_coco, 'print_log', lambda msg, *a, **k: logged.append(msg))
    det_ds = _dataset(
        data,
        [
            dict(type='LoadImageFromFile'),
            dict(type='DetectorBoxPrompts'),
            dict(type='PackSAMInputs'),
        ],
        det_prompt_file=str(det_file),
        det_score_thr=0.05,
    )
    used = len(dets) - 4
    assert any(
        f'{used} of {len(dets)} detections used' in m
        and '1 (unknown category)' in m
        and '1 (empty box)' in m
        and '1 (below det_score_thr)' in m
        and '1 (unknown image)' in m
        for m in logged
    )
    gt_ds = _dataset(data, [*LOAD, dict(type='BoxPromptsFromGT'), dict(type='PackSAMInputs')])

    official = build_official_sam('tiny', img_size=64, window_size=4, seed=3)
    model = official_to_mmsam(official, 'tiny', window_size=4)
    model.data_preprocessor.bgr_to_rgb = True
    assert MODELS.get('SAM') is type(model)
    metric = METRICS.build(dict(type='SAMCocoMetric', metric='segm', score_source='prompt'))
    metric.dataset_meta = det_ds.metainfo
    for index in (0, 2):  # images 101 and 103 have detections: the GT boxes
        det, gt = det_ds[index], gt_ds[index]
        det_gt = det['data_samples'].gt_instances
        assert (np.diff(det_gt.scores.numpy()) <= 0).all()  # ranked by detection score
        with torch.no_grad():
            out_det = model.test_step(
                dict(inputs=[det['inputs']], data_samples=[det['data_samples']])
            )
            out_gt = model.test_step(dict(inputs=[gt['inputs']], data_samples=[gt['data_samples']]))
        # the same boxes give the same masks, whichever path brought them; the two paths
        # decode other batches of boxes (other float rounding), so a pixel whose GT-path
        # logit is at the threshold may flip, no other
        pred_gt, pred_det = out_gt[0].pred_instances, out_det[0].pred_instances
        by_box = {
            tuple(b.tolist()): i for i, b in enumerate(gt['data_samples'].gt_instances.bboxes)
        }
        shapes = (out_gt[0].metainfo['img_shape'][:2], out_gt[0].metainfo['ori_shape'][:2])
        for box, mask, score in zip(det_gt.bboxes, pred_det.masks, pred_det.scores):
            i = by_box[tuple(box.tolist())]
            best = int(pred_gt.multimask_scores[i].argmax())
            logits = model.postprocess_masks(
                pred_gt.mask_logits[i : i + 1, best : best + 1], *shapes
            )
            assert_masks_match_logits(mask, logits[0, 0], threshold=model.mask_threshold)
            assert abs(float(score) - float(pred_gt.scores[i])) <= 1e-4
        metric.process({}, [out_det[0].to_dict()])
    assert all(
        np.isin(r['scores'], np.float32([d['score'] for d in dets])).all()
        for _, r in metric.results
    )
    out = metric.evaluate(2)
    assert 'coco/segm_mAP' in out


def test_bad_detection_file_is_refused_with_its_name(data, tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'annotations': []}))
    with pytest.raises(ValueError, match='bad.json.*COCO results list'):
        _dataset(data, [], det_prompt_file=str(bad))
    bad.write_text(json.dumps([{'image_id': 1, 'bbox': [0, 0, 1, 1]}]))
    with pytest.raises(ValueError, match='entry 0 is not a COCO detection'):
        _dataset(data, [], det_prompt_file=str(bad))


# ------------------------------------------------------------------ categories of any file
USER_CATEGORIES = [
    dict(id=10, name='tumor'),
    dict(id=20, name='building'),
    dict(id=35, name='road'),
    dict(id=40, name='lesion'),  # declared, without annotations
]


@pytest.fixture(scope='module')
def user_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('user'))
    return make_coco_fixture(root, bad_entries=True, categories=USER_CATEGORIES)


def _ann_categories(ann_file):
    """image id -> the category ids of its annotations, in file order (read directly)."""
    with open(ann_file) as f:
        coco_json = json.load(f)
    by_image = {}
    for ann in coco_json['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann['category_id'])
    return by_image


def test_any_category_names_are_kept_with_their_ids(user_data):
    dataset = _dataset(
        user_data, [*LOAD, dict(type='BoxPromptsFromGT'), dict(type='PackSAMInputs')]
    )
    assert dataset.metainfo['classes'] == ('tumor', 'building', 'road', 'lesion')
    assert dataset.metainfo['cat_ids'] == [10, 20, 35, 40]
    assert dataset.metainfo['palette'] is None  # not COCO's names: mmdet draws its own colours
    # the same drops as with COCO's names: only the undeclared category is dropped
    assert dict(dataset.audit) == BAD_ENTRY_COUNTS
    num_instances = 0
    for index in range(3):
        info = dataset.get_data_info(index)
        kept = [i for i in info['instances'] if not i['ignore_flag']]
        num_instances += len(kept)
        # the image's valid shapes come first in the file
        expected = _ann_categories(user_data['ann_file'])[info['img_id']][: len(kept)]
        assert [dataset.metainfo['cat_ids'][i['bbox_label']] for i in kept] == expected
    assert num_instances == 9


def test_coco_names_keep_coco_colours(data):
    dataset = _dataset(data, [])
    assert dataset.metainfo['classes'] == ('person', 'bicycle', 'car', 'not_a_coco_class')
    assert dataset.metainfo['palette'] is None  # one name is not COCO's
    only_coco = _dataset(data, [], metainfo=dict(classes=('car', 'person')))
    coco_palette = DATASETS.get('CocoDataset').METAINFO['palette']
    # restricted to these names, in the file's order, with COCO's colours for them
    assert only_coco.metainfo['classes'] == ('person', 'car')
    assert only_coco.metainfo['palette'] == [coco_palette[0], coco_palette[2]]


def test_metainfo_classes_restrict_the_categories(user_data):
    dataset = _dataset(user_data, [], metainfo=dict(classes=('building',)))
    assert dataset.metainfo['classes'] == ('building',) and dataset.metainfo['cat_ids'] == [20]
    kept = [
        i
        for index in range(len(dataset))
        for i in dataset.get_data_info(index)['instances']
        if not i['ignore_flag']
    ]
    with open(user_data['ann_file']) as f:
        anns = json.load(f)['annotations']
    # building's valid shapes (the degenerate box and the missing image's blob are not)
    expected = [a for a in anns if a['category_id'] == 20 and a['area'] > 0 and a['image_id'] < 200]
    assert len(kept) == len(expected) == 3 and all(i['bbox_label'] == 0 for i in kept)
    # dropped as outside the classes: the undeclared one, the 6 shapes of the two other
    # classes, the crowd and segmentation-less annotations (their category is checked
    # first, as mmdet does) and the missing image's blob
    assert dataset.audit['category'] == 1 + 6 + 2 + 1


def test_unknown_metainfo_class_names_the_file_and_its_categories(user_data):
    from mmsam.datasets import AnnotationFileError

    with pytest.raises(AnnotationFileError, match=r"\['person'\] are not categories.*'tumor'"):
        _dataset(user_data, [], metainfo=dict(classes=('tumor', 'person')))


def test_zero_instances_stop_the_load_with_the_reasons(data):
    from mmsam.datasets import NoInstancesError

    # a declared category without annotations: everything else is dropped by the restriction
    with pytest.raises(NoInstancesError) as info:
        _dataset(data, [], metainfo=dict(classes=('not_a_coco_class',)))
    message = str(info.value)
    assert data['ann_file'] in message and '0 instances to prompt' in message
    # 9 shapes, the crowd, undeclared and segmentation-less ones, the missing image's blob
    assert "13 annotations of categories outside the dataset's classes" in message
    assert '1 images whose file does not exist' in message
    assert "classes: 1 from metainfo: 'not_a_coco_class'" in message
    assert isinstance(info.value, ValueError)


def test_zero_usable_detections_stop_the_load(data, tmp_path):
    from mmsam.datasets import NoInstancesError

    det_file = tmp_path / 'dets.bbox.json'
    dets = [dict(image_id=101, category_id=77, bbox=[1, 1, 5, 5], score=0.9)] * 2
    dets.append(dict(image_id=101, category_id=1, bbox=[1, 1, 5, 5], score=0.01))
    det_file.write_text(json.dumps(dets))
    with pytest.raises(NoInstancesError, match='dets.bbox.json: nothing to prompt: 0 of 3') as e:
        _dataset(data, [], det_prompt_file=str(det_file), det_score_thr=0.05)
    assert '2 (unknown category)' in str(e.value) and '1 (below det_score_thr)' in str(e.value)
