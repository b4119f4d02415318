"""mmdet's COCO mask AP for SAM's prompted masks, and what the LVIS metric shares with it."""

import logging
from collections import Counter
from typing import Dict, Optional, Sequence

from mmdet.datasets.api_wrappers import COCO
from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from ...datasets.annotation_audit import segmentation_problem


class PromptScoreMixin:
    """Three adjustments of mmdet's AP metrics for prompted segmentation:

    * ``score_source='prompt'`` ranks each mask by its prompt's score (the detector's
      box score, ``gt_instances.scores``) instead of SAM's predicted IoU;
    * the images evaluated are those that were predicted (an image skipped by the
      dataset, e.g. a missing file, is not counted as all-missed; the dataset's log
      line counts them);
    * labels map to category ids through ``dataset_meta['cat_ids']`` (label ``i`` is
      ``cat_ids[i]``, as :class:`mmsam.datasets.SAMCocoDataset` numbers the categories
      it took from the annotation file) rather than by looking the class names up
      again; the annotation file is ``dataset_meta['ann_file']`` unless the metric was
      given its own ``ann_file``.

    Args:
        score_source (str): ``'model'`` (SAM's predicted IoU) or ``'prompt'``.
    """

    def __init__(self, *args, score_source: str = 'model', **kwargs) -> None:
        if score_source not in ('model', 'prompt'):
            raise ValueError(f"score_source must be 'model' or 'prompt', got {score_source!r}")
        self.score_source = score_source
        super().__init__(*args, **kwargs)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        if self.score_source == 'prompt':
            adjusted = []
            for sample in data_samples:
                gt = sample.get('gt_instances', {})
                if 'scores' not in gt:
                    raise KeyError(
                        "score_source='prompt' needs gt_instances.scores (detector prompts "
                        'from DetectorBoxPrompts)'
                    )
                sample = dict(sample)
                sample['pred_instances'] = dict(sample['pred_instances'], scores=gt['scores'])
                adjusted.append(sample)
            data_samples = adjusted
        super().process(data_batch, data_samples)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        self.img_ids = sorted({gt['img_id'] for gt, _ in results})
        return super().compute_metrics(results)

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        self._dataset_meta = dataset_meta
        meta = dataset_meta or {}
        if meta.get('cat_ids') is not None:
            self.cat_ids = list(meta['cat_ids'])
        if meta.get('ann_file'):
            self._ground_truth_from(meta['ann_file'])

    def _ground_truth_from(self, ann_file: str) -> None:
        """Load the ground truth from the dataset's ``ann_file`` unless already loaded."""
        raise NotImplementedError


@METRICS.register_module()
class SAMCocoMetric(PromptScoreMixin, CocoMetric):
    """mmdet's ``CocoMetric`` with :class:`PromptScoreMixin`'s adjustments.

    With ``ann_file=None`` the annotation file is the dataset's
    (``dataset_meta['ann_file']``, set by :class:`mmsam.datasets.SAMCocoDataset`), so
    that ``--cfg-options test_dataloader.dataset.data_root=...`` moves both.

    Ground-truth annotations without a usable segmentation (none, no polygon with
    3 points, a malformed RLE), which the dataset kept as ignored instances, become
    ignored regions for COCOeval (``iscrowd=1``, their box as polygon) instead of
    crashing it; they are counted in a log line.
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if self._coco_api is not None and not getattr(self, '_gt_checked', False):
            self._gt_checked = True
            self._ignore_unusable_segmentations()
        return super().compute_metrics(results)

    def _ignore_unusable_segmentations(self) -> None:
        problems: Counter = Counter()
        for ann in self._coco_api.anns.values():
            problem = segmentation_problem(ann)
            if problem:
                problems[problem] += 1
                x, y, w, h = ann['bbox']
                ann['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
                ann['iscrowd'] = 1
        if problems:
            detail = ', '.join(f'{v} {k}' for k, v in sorted(problems.items()))
            print_log(
                f'{type(self).__name__}: {sum(problems.values())} ground-truth annotations '
                f'without a usable segmentation ({detail}) are ignored regions in COCOeval',
                logger='current',
                level=logging.WARNING,
            )

    def _ground_truth_from(self, ann_file: str) -> None:
        if self._coco_api is None:
            with get_local_path(ann_file, backend_args=self.backend_args) as local_path:
                self._coco_api = COCO(local_path)
            print_log(
                f'{type(self).__name__}: ground truth from {ann_file}', 'current', logging.INFO
            )
