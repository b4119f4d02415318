"""Point prompts from ground-truth masks (the SAM paper's single-point protocol)."""

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from ...evaluation.functional import farthest_point
from .results_keys import boxes_array, require_key


@TRANSFORMS.register_module()
class PointPromptsFromGT(BaseTransform):
    """One positive click per instance at the maximum of its mask's distance transform.

    This is also the first click of the interactive protocol
    (:class:`mmsam.models.InteractiveSAM` adds the next ones). An empty
    ground-truth mask (e.g. a polygon too thin to cover a pixel) gets the centre
    of its box; the mIoU metric leaves such instances out and counts them.

    Required keys: ``gt_masks`` (``BitmapMasks`` at the original size, from
    ``LoadAnnotations(with_mask=True)``), ``gt_bboxes``.
    Added keys: ``prompt_points`` ``(N, 1, 2)`` float32 ``(x, y)`` in pixels of the
    original image, ``prompt_point_labels`` ``(N, 1)`` int64 (all 1).
    """

    def transform(self, results: dict) -> dict:
        hint = 'put LoadAnnotations(with_mask=True, poly2mask=True) before it in the pipeline'
        masks = require_key(self, results, 'gt_masks', hint)
        if not hasattr(masks, 'masks'):
            raise TypeError(
                'PointPromptsFromGT needs bitmap masks (LoadAnnotations(poly2mask=True)), '
                f'got {type(masks).__name__}'
            )
        boxes = results.get('gt_bboxes')
        if boxes is not None:
            boxes = boxes_array(boxes)
        points = np.zeros((len(masks), 1, 2), dtype=np.float32)
        for i, mask in enumerate(masks.masks):
            point, _ = farthest_point(mask.astype(bool))
            if point is None and boxes is not None:
                x1, y1, x2, y2 = boxes[i]
                point = ((x1 + x2) / 2, (y1 + y2) / 2)
            if point is not None:
                points[i, 0] = point
        results['prompt_points'] = points
        results['prompt_point_labels'] = np.ones((len(masks), 1), dtype=np.int64)
        return results
