"""LVIS AP (the LVIS authors' federated evaluation) of SAM's prompted masks."""

import json
import logging
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Union

from mmdet.evaluation import LVISMetric
from mmdet.registry import METRICS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from ...datasets.lvis_api import import_lvis
from .sam_coco_metric import PromptScoreMixin

#: ``LVISEval.get_results()`` entries reported, as ``{metric}_{item}`` (mmdet's defaults)
RESULT_ITEMS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'APr', 'APc', 'APf')


@METRICS.register_module()
class SAMLVISMetric(PromptScoreMixin, LVISMetric):
    """LVIS mask (or box) AP with the ``lvis`` package's ``LVISEval``
    (see :mod:`mmsam.datasets.lvis_api` for which package and why).

    The predictions are written as mmdet's ``LVISMetric`` writes them (``results2json``)
    and evaluated by the LVIS API: 300 detections per image at most, images are
    evaluated for the categories they are labelled with (positive or in
    ``neg_category_ids``), unmatched detections of ``not_exhaustive_category_ids`` are
    not false positives, and APr/APc/APf average the rare/common/frequent categories.
    Besides :class:`PromptScoreMixin`'s adjustments, three things differ from mmdet:

    * the images evaluated are the predicted ones (mmdet sets ``params.imgIds``, which
      ``LVISEval`` does not read, so it evaluates every image of the file);
    * the categories evaluated are the dataset's (``dataset_meta['cat_ids']``);
    * no prediction at all, or no annotation file, is an error rather than an empty
      result.

    Args:
        ann_file (str, optional): The LVIS annotation file; by default the dataset's
            (``dataset_meta['ann_file']``). The federated labels live only there.
        metric (str | list[str]): ``'segm'`` and/or ``'bbox'``. Defaults to ``'segm'``.
        **kwargs: ``score_source`` (:class:`PromptScoreMixin`) and mmdet's
            ``LVISMetric`` arguments (``format_only``, ``outfile_prefix``, ``prefix``,
            ``backend_args``, ...; not ``classwise``).
    """

    def __init__(
        self,
        ann_file: Optional[str] = None,
        metric: Union[str, List[str]] = 'segm',
        **kwargs,
    ) -> None:
        self._lvis = import_lvis()
        metrics = metric if isinstance(metric, list) else [metric]
        unsupported = [m for m in metrics if m not in ('segm', 'bbox')]
        if unsupported or kwargs.get('classwise'):
            raise ValueError(
                f"{type(self).__name__} computes 'segm' and 'bbox' AP over all categories; "
                f'got metric={metric!r}, classwise={kwargs.get("classwise")!r}'
            )
        super().__init__(ann_file=ann_file, metric=metric, **kwargs)

    def _ground_truth_from(self, ann_file: str) -> None:
        if self._lvis_api is None:
            with get_local_path(ann_file, backend_args=self.backend_args) as local_path:
                self._lvis_api = self._lvis.LVIS(local_path)
            print_log(
                f'{type(self).__name__}: ground truth from {ann_file}', 'current', logging.INFO
            )

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if not results:
            raise ValueError(f'{type(self).__name__}: no image was predicted')
        if self._lvis_api is None:
            raise ValueError(
                f'{type(self).__name__} needs the LVIS annotation file (ann_file, or a '
                "dataset that sets metainfo['ann_file']): the federated labels "
                '(neg_category_ids, not_exhaustive_category_ids) are not in the data samples'
            )
        gts, preds = zip(*results)
        self.img_ids = sorted({gt['img_id'] for gt in gts})
        if self.cat_ids is None:
            self.cat_ids = self._lvis_api.get_cat_ids()
        with tempfile.TemporaryDirectory() as tmp_dir:
            prefix = self.outfile_prefix or osp.join(tmp_dir, 'results')
            result_files = self.results2json(preds, prefix)
            if self.format_only:
                print_log(f'results are saved in {osp.dirname(prefix)}', 'current')
                return {}
            metrics: Dict[str, float] = {}
            for metric in self.metrics:
                with open(result_files[metric]) as f:
                    metrics.update(self._evaluate(json.load(f), metric))
        return metrics

    def _evaluate(self, detections: List[dict], iou_type: str) -> Dict[str, float]:
        if not detections:
            raise ValueError(f'{type(self).__name__}: no {iou_type} prediction to evaluate')
        lvis_dt = self._lvis.LVISResults(self._lvis_api, detections)
        lvis_eval = self._lvis.LVISEval(self._lvis_api, lvis_dt, iou_type)
        lvis_eval.params.img_ids = list(self.img_ids)
        lvis_eval.params.cat_ids = sorted(self.cat_ids)
        lvis_eval.run()
        values = lvis_eval.get_results()
        out = {f'{iou_type}_{k}': float(f'{float(values[k]):.3f}') for k in RESULT_ITEMS}
        print_log(
            f'{type(self).__name__} {iou_type} ({len(self.img_ids)} images, '
            f'{len(detections)} predictions): '
            + ', '.join(f'{k} {float(values[k]):.4f}' for k in RESULT_ITEMS),
            'current',
        )
        return out
