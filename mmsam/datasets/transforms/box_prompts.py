"""Box prompts: from ground-truth boxes, or from a detector's results."""

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from .results_keys import boxes_array, require_key


@TRANSFORMS.register_module()
class BoxPromptsFromGT(BaseTransform):
    """One box prompt per ground-truth instance (its annotated box, XYXY).

    Required keys: ``gt_bboxes`` (from ``LoadAnnotations(with_bbox=True)``).
    Added keys: ``prompt_bboxes`` ``(N, 4)`` float32, original frame.
    """

    def transform(self, results: dict) -> dict:
        hint = 'put LoadAnnotations(with_bbox=True) before it in the pipeline'
        boxes = require_key(self, results, 'gt_bboxes', hint)
        results['prompt_bboxes'] = boxes_array(boxes)
        return results


@TRANSFORMS.register_module()
class DetectorBoxPrompts(BaseTransform):
    """Box prompts from a detector's results, as attached by the dataset.

    The dataset (``SAMCocoDataset(det_prompt_file=...)``) reads a COCO results JSON
    and stores, per image, ``det_prompts = dict(bboxes (K, 4) XYXY, labels (K,),
    scores (K,))``. This transform exposes them as prompts, ranked by score and
    optionally capped to ``max_per_img``.

    Added keys: ``prompt_bboxes`` ``(K, 4)`` float32, ``prompt_labels`` ``(K,)`` int64,
    ``prompt_scores`` ``(K,)`` float32.

    Args:
        max_per_img (int, optional): Keep at most this many highest-scoring boxes.
    """

    def __init__(self, max_per_img=None) -> None:
        if max_per_img is not None and int(max_per_img) < 1:
            raise ValueError(f'max_per_img must be None or >= 1, got {max_per_img}')
        self.max_per_img = max_per_img

    def transform(self, results: dict) -> dict:
        hint = (
            'set det_prompt_file=<COCO results JSON> on the dataset '
            '(SAMCocoDataset, SAMLVISV1Dataset)'
        )
        det = require_key(self, results, 'det_prompts', hint)
        scores = np.asarray(det['scores'], dtype=np.float32).reshape(-1)
        order = np.argsort(-scores, kind='stable')
        if self.max_per_img is not None:
            order = order[: int(self.max_per_img)]
        results['prompt_bboxes'] = np.asarray(det['bboxes'], np.float32).reshape(-1, 4)[order]
        results['prompt_labels'] = np.asarray(det['labels'], np.int64).reshape(-1)[order]
        results['prompt_scores'] = scores[order]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(max_per_img={self.max_per_img})'
