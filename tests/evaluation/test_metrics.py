"""mIoU per click, COCO mask AP of prompted masks and the --out dump."""

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
