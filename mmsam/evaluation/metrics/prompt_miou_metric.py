"""mIoU of prompted masks against their ground truth, per number of clicks."""

import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..functional import mask_iou, to_bool_masks


def _get(obj, key):
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


def _has(obj, key) -> bool:
    return key in obj if isinstance(obj, dict) else hasattr(obj, key)


@METRICS.register_module()
class PromptMIoUMetric(BaseMetric):
    """Mean IoU between each prompt's mask and its ground-truth instance.

    Two variants, as in the SAM paper: ``mIoU@k`` scores the mask SAM would return
    (the output with the highest predicted IoU), ``oracle_mIoU@k`` the best of the
    multimask outputs against the ground truth. ``k`` is the number of clicks:
    single-round predictions (box or 1-point prompts through ``model.predict``)
    give ``k = 1`` only; :class:`mmsam.models.InteractiveSAM` records ``click_ious`` and
    ``click_oracle_ious`` ``(N, K)`` for ``k = 1..K``. The mean is over all
    instances of the dataset; instances whose ground-truth mask is empty are left
    out and counted in the log.

    Inputs per data sample: ``gt_instances.masks`` ``(N, H, W)`` (original size)
    and ``pred_instances`` with ``masks (N, H, W)``, ``multimask_masks
    (N, C, H, W)`` (or the click IoUs).

    Args:
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Metric name prefix, e.g. the dataset's name.
    """

    default_prefix: Optional[str] = 'sam'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            gt = _get(sample, 'gt_instances')
            pred = _get(sample, 'pred_instances')
            if not _has(gt, 'masks'):
                raise KeyError(
                    'PromptMIoUMetric needs gt_instances.masks (prompts from ground truth, '
                    'LoadAnnotations(with_mask=True)); detector prompts have no ground-truth '
                    'instance to compare with'
                )
            gt_masks = to_bool_masks(_get(gt, 'masks'))
            gt_empty = (gt_masks.flatten(1).sum(1) == 0).cpu().numpy()
            if _has(pred, 'click_ious'):
                default = torch.as_tensor(_get(pred, 'click_ious')).double().cpu()
                oracle = torch.as_tensor(_get(pred, 'click_oracle_ious')).double().cpu()
            else:
                masks = _get(pred, 'masks')
                gt_masks = gt_masks.to(masks.device)
                default = mask_iou(masks, gt_masks)[:, None].cpu()
                if _has(pred, 'multimask_masks'):
                    multi = mask_iou(_get(pred, 'multimask_masks'), gt_masks[:, None])
                    oracle = multi.max(dim=1).values[:, None].cpu()
                else:
                    oracle = default.clone()
            if len(default) != len(gt_empty):
                raise ValueError(
                    f'image {sample.get("img_id")}: {len(default)} predictions for '
                    f'{len(gt_empty)} ground-truth masks'
                )
            keep = ~gt_empty
            self.results.append(
                dict(
                    img_id=sample.get('img_id'),
                    default=default.numpy()[keep],
                    oracle=oracle.numpy()[keep],
                    num_empty=int(gt_empty.sum()),
                )
            )

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        # the same order on one process or many (the mean does not depend on the split)
        results = sorted(results, key=lambda r: (r['img_id'] is None, r['img_id'] or 0))
        num_empty = sum(r['num_empty'] for r in results)
        if num_empty:
            print_log(
                f'{num_empty} instances with an empty ground-truth mask are left out of the mIoU',
                logger='current',
                level=logging.WARNING,
            )
        clicks = {r['default'].shape[1] for r in results if len(r['default'])}
        if len(clicks) > 1:
            raise ValueError(f'data samples disagree on the number of clicks: {sorted(clicks)}')
        num_clicks = clicks.pop() if clicks else 1
        default = np.concatenate([r['default'].reshape(-1, num_clicks) for r in results])
        oracle = np.concatenate([r['oracle'].reshape(-1, num_clicks) for r in results])
        metrics: Dict[str, float] = {}
        for k in range(num_clicks):
            empty = len(default) == 0
            metrics[f'mIoU@{k + 1}'] = float('nan') if empty else float(default[:, k].mean())
            metrics[f'oracle_mIoU@{k + 1}'] = float('nan') if empty else float(oracle[:, k].mean())
        metrics['num_instances'] = float(len(default))
        return metrics
