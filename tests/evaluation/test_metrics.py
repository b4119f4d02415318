"""mIoU per click, COCO mask AP of prompted masks and the --out dump."""

import json
import pickle

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from mmsam.evaluation import DumpSAMResults, PromptMIoUMetric, SAMCocoMetric, mask_iou
from mmsam.testing.coco_fixture import make_coco_fixture

COCO_CLASSES = ('person', 'bicycle', 'car')


@pytest.fixture
def logged(monkeypatch):
    """The messages the metrics log with print_log."""
    from mmsam.evaluation.metrics import prompt_miou_metric, sam_coco_metric

    messages = []
    for module in (prompt_miou_metric, sam_coco_metric):
        monkeypatch.setattr(module, 'print_log', lambda msg, *a, **k: messages.append(msg))
    return messages


def test_mask_iou_counts_exactly():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2] = True  # 8 pixels
    b[0, :1] = True  # 4 pixels, inside a
    assert mask_iou(a, b).tolist() == [0.5, 1.0]  # both empty: 1
    with pytest.raises(ValueError, match='differ in size'):
        mask_iou(a, b[:, :3])


def _sample(img_id, gt, masks, multi=None, **extra):
    pred = dict(masks=torch.as_tensor(masks))
    if multi is not None:
        pred['multimask_masks'] = torch.as_tensor(multi)
    pred.update(extra)
    return dict(img_id=img_id, gt_instances=dict(masks=torch.as_tensor(gt)), pred_instances=pred)


def test_prompt_miou_default_and_oracle():
    gt = np.zeros((2, 4, 4), bool)
    gt[0, :2] = True
    gt[1, :, :1] = True
    pred = np.zeros_like(gt)
    pred[0, :1] = True  # IoU 0.5
    pred[1] = True  # IoU 4/16
    multi = np.stack([pred, gt, np.zeros_like(gt)], 1)  # the oracle finds the GT itself
    metric = PromptMIoUMetric(prefix='x')
    metric.process({}, [_sample(2, gt, pred, multi), _sample(1, gt[:1], gt[:1], multi[:1])])
    out = metric.evaluate(2)
    assert out['x/mIoU@1'] == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert out['x/oracle_mIoU@1'] == pytest.approx(1.0)
    assert out['x/num_instances'] == 3


def test_prompt_miou_per_click_leaves_empty_gt_out_and_says_so(logged):
    gt = np.zeros((3, 4, 4), bool)
    gt[0, 0, 0] = gt[1, 1, 1] = True  # gt[2] is empty
    ious = torch.tensor([[0.1, 0.5], [0.3, 0.7], [0.9, 0.9]], dtype=torch.float64)
    sample = _sample(5, gt, np.zeros_like(gt), click_ious=ious, click_oracle_ious=ious + 0.1)
    metric = PromptMIoUMetric()
    metric.process({}, [sample])
    out = metric.evaluate(1)
    assert out['sam/mIoU@1'] == pytest.approx(0.2) and out['sam/mIoU@2'] == pytest.approx(0.6)
    assert out['sam/oracle_mIoU@2'] == pytest.approx(0.7) and out['sam/num_instances'] == 2
    assert any('1 instances with an empty ground-truth mask' in m for m in logged)


def test_prompt_miou_needs_gt_masks():
    metric = PromptMIoUMetric()
    sample = dict(img_id=1, gt_instances=dict(bboxes=torch.zeros(1, 4)), pred_instances={})
    with pytest.raises(KeyError, match='gt_instances.masks'):
        metric.process({}, [sample])


@pytest.fixture(scope='module')
def fixture_data(tmp_path_factory):
    clean = make_coco_fixture(str(tmp_path_factory.mktemp('clean')), bad_entries=False)
    bad = make_coco_fixture(str(tmp_path_factory.mktemp('bad')), bad_entries=True)
    return clean, bad


def _gt_as_predictions(ann_file, score=None):
    """Data samples predicting every valid ground-truth mask exactly."""
    coco = COCO(ann_file)
    samples = []
    for img_id in sorted(coco.imgs):
        img = coco.imgs[img_id]
        anns = [
            a
            for a in coco.imgToAnns.get(img_id, [])
            if a.get('segmentation')
            and not a['iscrowd']
            and a['category_id'] <= 3
            and a['area'] > 0
        ]
        masks = np.zeros((len(anns), img['height'], img['width']), bool)
        for i, a in enumerate(anns):
            masks[i] = coco.annToMask(a)
        n = len(anns)
        pred = dict(
            masks=torch.from_numpy(masks),
            scores=torch.linspace(0.9, 0.5, n),
            labels=torch.tensor([a['category_id'] - 1 for a in anns], dtype=torch.int64),
            bboxes=torch.zeros(n, 4),
        )
        gt = dict(scores=torch.full((n,), score)) if score is not None else {}
        samples.append(
            dict(
                img_id=img_id,
                ori_shape=(img['height'], img['width']),
                pred_instances=pred,
                gt_instances=gt,
            )
        )
    return samples


def test_coco_metric_reads_the_dataset_ann_file_and_scores_exact_masks_1(fixture_data):
    clean, _ = fixture_data
    metric = SAMCocoMetric(metric='segm')
    metric.dataset_meta = dict(classes=COCO_CLASSES, ann_file=clean['ann_file'])
    metric.process({}, _gt_as_predictions(clean['ann_file']))
    out = metric.evaluate(3)
    assert out['coco/segm_mAP'] == 1.0 and out['coco/segm_mAP_50'] == 1.0


def test_coco_metric_survives_bad_annotations_and_ranks_by_prompt_scores(fixture_data, logged):
    _, bad = fixture_data
    metric = SAMCocoMetric(metric='segm', score_source='prompt')
    metric.dataset_meta = dict(classes=COCO_CLASSES, ann_file=bad['ann_file'])
    samples = [s for s in _gt_as_predictions(bad['ann_file'], score=0.7) if s['img_id'] != 202]
    metric.process({}, samples)
    assert all((r['scores'] == np.float32(0.7)).all() for _, r in metric.results)
    out = metric.evaluate(len(samples))
    # the zero-area annotation stays a ground truth nobody prompted (as in mmdet)
    assert 0.5 < out['coco/segm_mAP'] < 1.0
    assert any('without a usable segmentation (1 no_segmentation)' in m for m in logged)
    assert metric.img_ids == [101, 102, 103, 201]  # the image with a missing file is out


def test_coco_metric_prompt_scores_need_prompt_scores():
    metric = SAMCocoMetric(metric='segm', score_source='prompt')
    with pytest.raises(KeyError, match='gt_instances.scores'):
        metric.process({}, [dict(img_id=1, gt_instances={}, pred_instances={})])
    with pytest.raises(ValueError, match='score_source'):
        SAMCocoMetric(score_source='detector')


def test_dump_writes_rles_and_prompts(tmp_path):
    out = tmp_path / 'sub' / 'res.pkl'
    dump = DumpSAMResults(str(out))
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:4] = True
    sample = dict(
        img_id=7,
        img_path='a.png',
        ori_shape=(5, 6),
        gt_instances=dict(bboxes=torch.ones(2, 4), masks=masks),
        pred_instances=dict(
            masks=masks,
            scores=torch.tensor([0.5, 0.2]),
            multimask_masks=masks[:, None].repeat(1, 3, 1, 1),
            mask_logits=torch.zeros(2, 3, 8, 8),
        ),
    )
    dump.process({}, [sample])
    dump.evaluate(1)
    with open(out, 'rb') as f:
        (record,) = pickle.load(f)
    from pycocotools import mask as mask_api

    assert record['img_id'] == 7 and record['prompts']['bboxes'].shape == (2, 4)
    assert 'masks' not in record['prompts'] and 'mask_logits' not in record['pred_instances']
    assert np.array_equal(mask_api.decode(record['pred_instances']['masks'][0]), masks[0].numpy())
    assert list(tmp_path.joinpath('sub').iterdir()) == [out]  # no temporary file left
    with pytest.raises(ValueError, match='.pkl'):
        DumpSAMResults(str(tmp_path / 'res.json'))


# ------------------------------------------------ any COCO-format file; LVIS
USER_CATEGORIES = [
    dict(id=10, name='tumor'),
    dict(id=20, name='building'),
    dict(id=35, name='road'),
]
LOAD = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
]


@pytest.fixture
def mmdet_scope():
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def _build_dataset(type_, data, ann_file, **kwargs):
    from mmdet.registry import DATASETS

    import mmsam.datasets  # noqa: F401

    return DATASETS.build(
        dict(
            type=type_,
            data_root=data['data_root'],
            ann_file=ann_file,
            data_prefix=dict(img='val2017/' if type_ == 'SAMCocoDataset' else ''),
            test_mode=True,
            pipeline=LOAD,
            **kwargs,
        )
    )


def _valid_annotations(gt_json, img_id, cat_ids):
    """The annotations of an image that mmdet keeps as instances, read from the file."""
    return [
        a
        for a in gt_json['annotations']
        if a['image_id'] == img_id
        and a['category_id'] in cat_ids
        and not a.get('iscrowd', 0)
        and a['area'] > 0
        and a.get('segmentation')
    ]


def _box(mask):
    ys, xs = np.nonzero(mask)
    return np.float32([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def _pred_sample(res, masks, scores, labels):
    """A data sample predicting ``masks (N, H, W)`` for the dataset item ``res``."""
    return dict(
        img_id=res['img_id'],
        ori_shape=res['ori_shape'],
        gt_instances={},
        pred_instances=dict(
            masks=torch.from_numpy(masks),
            scores=torch.from_numpy(scores),
            labels=torch.from_numpy(labels),
            bboxes=torch.from_numpy(np.stack([_box(m) for m in masks])),
        ),
    )


def _perturbed_predictions(dataset, gt_json, cat_ids, seed):
    """One prediction per ground-truth instance of the dataset (its mask eroded by 0-2
    pixels, a random score, the dataset's label), and the same predictions as a COCO
    results list whose category ids are read from the annotation file itself.

    Returns:
        tuple: data samples for the metric, results for COCOeval / LVISEval.
    """
    from pycocotools import mask as mask_api
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    samples, reference = [], []
    for index in range(len(dataset)):
        res = dataset[index]
        keep = ~res['gt_ignore_flags']
        gt_masks = res['gt_masks'].masks[keep].astype(bool)
        gt_boxes = res['gt_bboxes'].numpy()[keep]
        anns = _valid_annotations(gt_json, res['img_id'], cat_ids)
        x, y, w, h = np.asarray([a['bbox'] for a in anns], np.float32).reshape(-1, 4).T
        # the file's annotations and the dataset's instances are the same, in the same order
        assert np.array_equal(np.stack([x, y, x + w, y + h], 1), gt_boxes)
        masks = np.stack(
            [
                ndimage.binary_erosion(m, iterations=int(k)) if k else m
                for m, k in zip(gt_masks, rng.integers(0, 3, len(gt_masks)))
            ]
        )
        scores = rng.uniform(0.1, 1.0, len(masks)).astype(np.float32)
        samples.append(_pred_sample(res, masks, scores, res['gt_bboxes_labels'][keep]))
        boxes = samples[-1]['pred_instances']['bboxes'].numpy()
        for ann, mask, score, box in zip(anns, masks, scores, boxes):
            rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle['counts'] = rle['counts'].decode()
            x1, y1, x2, y2 = box.tolist()
            reference.append(
                dict(
                    image_id=res['img_id'],
                    category_id=ann['category_id'],
                    segmentation=rle,
                    score=float(score),
                    bbox=[x1, y1, x2 - x1, y2 - y1],
                )
            )
    return samples, reference


def _cocoeval_ap(ann_file, results, img_ids, cat_ids):
    from pycocotools.cocoeval import COCOeval

    gt = COCO(ann_file)
    evaluator = COCOeval(gt, gt.loadRes(results), 'segm')
    evaluator.params.imgIds = sorted(img_ids)
    evaluator.params.catIds = sorted(cat_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return round(evaluator.stats[0], 3), round(evaluator.stats[1], 3)


@pytest.mark.parametrize('classes', [None, ('building',)], ids=['all', 'metainfo'])
def test_coco_ap_of_any_category_names_equals_cocoeval(tmp_path, mmdet_scope, classes):
    data = make_coco_fixture(str(tmp_path), bad_entries=False, categories=USER_CATEGORIES)
    kwargs = {} if classes is None else dict(metainfo=dict(classes=classes))
    dataset = _build_dataset('SAMCocoDataset', data, data['ann_file'], **kwargs)
    cat_ids = [20] if classes else [10, 20, 35]
    with open(data['ann_file']) as f:
        gt_json = json.load(f)
    samples, reference = _perturbed_predictions(dataset, gt_json, cat_ids, seed=0)
    # every instance of these categories is prompted: 9 in all, 3 of them buildings
    assert len(reference) == (3 if classes else 9)
    metric = SAMCocoMetric(metric='segm')
    metric.dataset_meta = dataset.metainfo
    metric.process({}, samples)
    out = metric.evaluate(len(samples))
    ap, ap50 = _cocoeval_ap(data['ann_file'], reference, [s['img_id'] for s in samples], cat_ids)
    assert 0.2 < ap < 1.0  # the erosions make the AP non-trivial
    assert (out['coco/segm_mAP'], out['coco/segm_mAP_50']) == (ap, ap50)


@pytest.fixture(scope='module')
def lvis_data(tmp_path_factory):
    from mmsam.testing.coco_fixture import make_lvis_fixture

    return make_lvis_fixture(str(tmp_path_factory.mktemp('lvis')))


def test_lvis_dataset_reads_an_lvis_v1_file(lvis_data, mmdet_scope):
    from mmsam.testing.coco_fixture import LVIS_CATEGORIES

    dataset = _build_dataset('SAMLVISV1Dataset', lvis_data, 'annotations/lvis_v1_val.json')
    assert dataset.metainfo['classes'] == tuple(c['name'] for c in LVIS_CATEGORIES)
    assert dataset.metainfo['cat_ids'] == [1, 2, 3, 4, 5]
    assert dataset.metainfo['ann_file'] == lvis_data['ann_file']
    assert len(dataset) == 3 and dataset.audit['missing_file'] == 0
    assert sum(len(dataset.get_data_info(i)['instances']) for i in range(3)) == 9
    first = dataset[0]
    assert first['img_path'].endswith('val2017/000000000101.png') and first['img'].shape[:2] == (
        100,
        150,
    )


def _lvis_reference(ann_file, results, img_ids, monkeypatch):
    """The LVIS authors' evaluator called directly on the file and a results list."""
    import lvis

    # lvis 0.5.3's accumulate() calls np.float (= float), which numpy >= 1.24 lacks
    monkeypatch.setattr(np, 'float', float, raising=False)
    gt = lvis.LVIS(ann_file)
    evaluator = lvis.LVISEval(gt, lvis.LVISResults(gt, results), 'segm')
    evaluator.params.img_ids = sorted(img_ids)
    evaluator.run()
    return {k: round(float(v), 3) for k, v in evaluator.get_results().items()}


def test_lvis_mask_ap_equals_the_lvis_evaluator(lvis_data, mmdet_scope, monkeypatch):
    from mmsam.evaluation import SAMLVISMetric

    dataset = _build_dataset('SAMLVISV1Dataset', lvis_data, 'annotations/lvis_v1_val.json')
    with open(lvis_data['ann_file']) as f:
        gt_json = json.load(f)
    samples, reference = _perturbed_predictions(dataset, gt_json, [1, 2, 3, 4, 5], seed=1)
    metric = SAMLVISMetric()  # the annotation file comes from the dataset
    metric.dataset_meta = dataset.metainfo
    metric.process({}, samples)
    out = metric.evaluate(len(samples))
    expected = _lvis_reference(lvis_data['ann_file'], reference, [101, 102, 103], monkeypatch)
    assert 0.2 < expected['AP'] < 1.0
    items = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'APr', 'APc', 'APf')
    assert {k: out[f'lvis/segm_{k}'] for k in items} == {k: expected[k] for k in items}


def test_lvis_federated_rules_from_the_definition(lvis_data, mmdet_scope):
    """Exact masks for every instance (score 0.9) and four false positives (score 0.95):

    * category 4 in image 102, where 4 is a verified negative: a false positive ranked
      above category 4's only instance (image 101), so its precision is 1/2 at every
      recall and its AP 0.5;
    * category 4 in image 103, which is not labelled for 4: not evaluated;
    * category 1 in image 103, whose labels for 1 are not exhaustive: an unmatched
      detection there is not a false positive;
    * category 5 in image 101 (a negative), which has no instance anywhere: no AP.

    AP = mean over the categories with instances (1, 2, 3, 4) = (1 + 1 + 1 + 0.5) / 4;
    APr over categories 3 and 4 (rare) = 0.75; APc (category 2) = APf (category 1) = 1.
    """
    from mmsam.evaluation import SAMLVISMetric

    dataset = _build_dataset('SAMLVISV1Dataset', lvis_data, 'annotations/lvis_v1_val.json')
    label = {cat: i for i, cat in enumerate(dataset.metainfo['cat_ids'])}
    extra = {102: [4], 103: [4, 1], 101: [5]}
    samples = []
    for index in range(len(dataset)):
        res = dataset[index]
        masks = res['gt_masks'].masks.astype(bool)
        labels = res['gt_bboxes_labels'].tolist()
        corner = np.zeros((1, *masks.shape[1:]), bool)
        corner[0, :3, :3] = True  # far from every shape
        for cat in extra[res['img_id']]:
            masks = np.concatenate([masks, corner])
            labels.append(label[cat])
        n_gt = len(res['gt_bboxes_labels'])
        scores = [0.9] * n_gt + [0.95] * (len(labels) - n_gt)
        samples.append(_pred_sample(res, masks, np.float32(scores), np.int64(labels)))
    metric = SAMLVISMetric(metric=['segm', 'bbox'])
    metric.dataset_meta = dataset.metainfo
    metric.process({}, samples)
    out = metric.evaluate(len(samples))
    for kind in ('segm', 'bbox'):
        assert out[f'lvis/{kind}_AP'] == out[f'lvis/{kind}_AP50'] == 0.875
        assert out[f'lvis/{kind}_APr'] == 0.75
        assert out[f'lvis/{kind}_APc'] == out[f'lvis/{kind}_APf'] == 1.0


def test_lvis_metric_refuses_what_it_cannot_compute():
    from mmsam.evaluation import SAMLVISMetric

    with pytest.raises(ValueError, match="'segm' and 'bbox'"):
        SAMLVISMetric(metric='proposal')
    metric = SAMLVISMetric()
    with pytest.raises(ValueError, match='needs the LVIS annotation file'):
        metric.compute_metrics([({'img_id': 1}, {})])
    with pytest.raises(ValueError, match='no image was predicted'):
        metric.compute_metrics([])
