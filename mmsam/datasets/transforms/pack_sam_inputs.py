"""Pack an image, its prompts and its ground truth into SAM's data sample."""

from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

# results key -> gt_instances field read by the SAM model as a prompt
PROMPT_FIELDS = {
    'prompt_bboxes': 'bboxes',
    'prompt_points': 'points',
    'prompt_point_labels': 'point_labels',
    'prompt_mask_inputs': 'mask_inputs',
}


@TRANSFORMS.register_module()
class PackSAMInputs(BaseTransform):
    """Pack the inputs of :class:`mmsam.models.SAM` (cf. mmdet's ``PackDetInputs``).

    * ``inputs``: the image as a ``(3, H, W)`` uint8 tensor, not resized (the model's
      data preprocessor resizes it exactly as the official code does).
    * ``data_samples.gt_instances``: the prompts (``bboxes``, ``points``,
      ``point_labels``, ``mask_inputs``, whichever the prompt transforms made, in the
      original frame) and, for ground-truth prompts, ``labels`` and the original-size
      ``masks`` that the mIoU metric compares against. Crowd and invalid instances
      (``gt_ignore_flags``) are left out. For detector prompts (``prompt_labels``
      present) it holds the detector's ``bboxes``, ``labels`` and ``scores``.

    A prompt field is always present, possibly with zero rows, so an image without
    instances gets zero predictions rather than a prompt-less one.

    Args:
        meta_keys (Sequence[str]): Keys copied into the metainfo.
    """

    def __init__(
        self, meta_keys: Sequence[str] = ('img_id', 'img_path', 'ori_shape', 'img_shape')
    ) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = DetDataSample()
        sample.gt_instances = self._instances(results)
        sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=inputs, data_samples=sample)

    @staticmethod
    def _instances(results: dict) -> InstanceData:
        instances = InstanceData()
        present = [k for k in PROMPT_FIELDS if k in results]
        if not present:
            raise KeyError(
                'PackSAMInputs found no prompts: put a prompt transform (BoxPromptsFromGT, '
                'PointPromptsFromGT or DetectorBoxPrompts) before it in the pipeline'
            )
        if 'prompt_labels' in results:  # detector prompts: no GT correspondence
            keep = slice(None)
            instances.labels = torch.as_tensor(results['prompt_labels'], dtype=torch.int64)
            if 'prompt_scores' in results:
                instances.scores = torch.as_tensor(results['prompt_scores'], dtype=torch.float32)
        else:
            n = len(results[present[0]])
            flags = results.get('gt_ignore_flags')
            flags = np.zeros(n, bool) if flags is None else np.asarray(flags, bool)
            keep = np.flatnonzero(~flags)
            if 'gt_bboxes_labels' in results:
                labels = np.asarray(results['gt_bboxes_labels'], np.int64)[keep]
                instances.labels = torch.from_numpy(labels)
            if 'gt_masks' in results:
                instances.masks = results['gt_masks'][keep]
        for key in present:
            value = np.asarray(results[key])[keep]
            dtype = torch.int64 if key == 'prompt_point_labels' else torch.float32
            instances[PROMPT_FIELDS[key]] = torch.as_tensor(value, dtype=dtype)
        return instances

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'
