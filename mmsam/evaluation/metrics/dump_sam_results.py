"""Dump SAM's predictions and prompts to a pickle file (``tools/test.py --out``)."""

import pickle
from typing import Sequence

import numpy as np
import torch
from mmdet.registry import METRICS
from mmdet.structures.mask import encode_mask_results
from mmengine.evaluator import BaseMetric

from ...utils.atomic_file import atomic_write

#: pred_instances fields kept as arrays (others, e.g. multimask masks and logits, are dropped)
ARRAY_FIELDS = (
    'scores',
    'labels',
    'bboxes',
    'multimask_scores',
    'click_ious',
    'click_oracle_ious',
    'click_points',
    'click_labels',
)
#: gt_instances fields that were prompts
PROMPT_FIELDS = ('bboxes', 'points', 'point_labels', 'labels', 'scores')


def _array(value) -> np.ndarray:
    if hasattr(value, 'tensor'):  # mmdet boxes
        value = value.tensor
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@METRICS.register_module()
class DumpSAMResults(BaseMetric):
    """Write one record per image: ``img_id``, ``img_path``, ``ori_shape``,
    ``pred_instances`` (``masks`` as COCO RLEs, plus :data:`ARRAY_FIELDS` as numpy
    arrays) and ``prompts`` (:data:`PROMPT_FIELDS` of ``gt_instances``).

    The file is written whole or not at all (a temporary file, then a rename).

    Args:
        out_file_path (str): Path of the ``.pkl`` / ``.pickle`` file.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
    """

    def __init__(self, out_file_path: str, collect_device: str = 'cpu') -> None:
        super().__init__(collect_device=collect_device)
        if not str(out_file_path).endswith(('.pkl', '.pickle')):
            raise ValueError(f'out_file_path must end with .pkl or .pickle, got {out_file_path!r}')
        self.out_file_path = str(out_file_path)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample.get('pred_instances', {})
            gt = sample.get('gt_instances', {})
            record = dict(
                img_id=sample.get('img_id'),
                img_path=sample.get('img_path'),
                ori_shape=tuple(sample.get('ori_shape', ())),
                pred_instances={k: _array(pred[k]) for k in ARRAY_FIELDS if k in pred},
                prompts={k: _array(gt[k]) for k in PROMPT_FIELDS if k in gt},
            )
            if 'masks' in pred:
                masks = _array(pred['masks']).astype(bool)
                record['pred_instances']['masks'] = encode_mask_results(masks)
            self.results.append(record)

    def compute_metrics(self, results: list) -> dict:
        with atomic_write(self.out_file_path, 'wb') as f:
            pickle.dump(results, f)
        return {}
