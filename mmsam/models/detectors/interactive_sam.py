"""SAM evaluated with simulated clicks: the SAM paper's interactive protocol."""

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, SampleList
from mmengine.structures import InstanceData

from ...structures.boxes import masks_to_boxes
from ...structures.mask_postprocess import select_best_candidate
from ...structures.transforms import apply_coords
from .sam import SAM


@MODELS.register_module()
class InteractiveSAM(SAM):
    """SAM that adds clicks until each instance has ``num_clicks`` (after RITM).

    The first click of each instance comes with the data sample
    (``gt_instances.points (N, 1, 2)``, ``point_labels (N, 1)``, e.g. from
    :class:`mmsam.datasets.PointPromptsFromGT`). After each round, the next click is
    the point farthest from the boundary of the larger error region of the mask SAM
    returns: positive in a false-negative region, negative in a false-positive one
    (:func:`mmsam.evaluation.next_click`). Each round decodes all clicks so far with
    the previous round's low-resolution logits of that mask as ``mask_inputs``. An
    instance whose mask is exact gets no more clicks and keeps its IoU.

    Which mask SAM returns follows ``test_cfg['multimask_output']`` (see :class:`SAM`):
    with ``'auto'`` (default, the SAM paper's protocol) the first click gets the three
    multimask outputs, the one with the highest predicted IoU returned and the best of
    the three against the ground truth as the oracle; clicks 2..K get the single
    output (the oracle is then that mask too). ``True`` picks the best of three by
    predicted IoU after every click, ``False`` takes the single output after every
    click.

    Needs the ground-truth masks in ``gt_instances.masks`` (``(N, H, W)``, original
    size; ``BitmapMasks``, array or tensor).

    Args:
        num_clicks (int): Clicks per instance, ``K >= 1``. Defaults to 5.
        **kwargs: The arguments of :class:`SAM`.

    ``pred_instances`` hold :class:`SAM`'s fields for the last round (``C`` outputs as
    in :meth:`SAM.predict`) plus
    ``click_ious (N, K)`` float64 (IoU of the returned mask after each click),
    ``click_oracle_ious (N, K)`` (best of the ``C`` outputs after each click),
    ``click_points (N, K, 2)`` (original frame) and ``click_labels (N, K)``
    (1 positive, 0 negative, -1 no click: the instance was already exact).
    """

    def __init__(self, *args, num_clicks: int = 5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if int(num_clicks) != num_clicks or num_clicks < 1:
            raise ValueError(f'num_clicks must be an integer >= 1, got {num_clicks!r}')
        self.num_clicks = int(num_clicks)

    def predict(
        self, batch_inputs: torch.Tensor, batch_data_samples: SampleList, rescale: bool = True
    ) -> SampleList:
        """Run the click loop on each data sample.

        Args:
            batch_data_samples (list[DetDataSample]): with ``gt_instances.points
                (N, 1, 2)``, ``point_labels (N, 1)`` and ``masks (N, H, W)``.
            batch_inputs, rescale: As for :meth:`SAM.predict`.

        Returns:
            list[DetDataSample]: with ``pred_instances`` as described in the class.
        """
        embeddings = self.extract_feat(batch_inputs)[0]
        for i, sample in enumerate(batch_data_samples):
            sample.pred_instances = self._click_loop(embeddings[i : i + 1], sample)
        return batch_data_samples

    def _check_sample(self, sample: DetDataSample) -> InstanceData:
        gt = sample.gt_instances if 'gt_instances' in sample else InstanceData()
        missing = [k for k in ('points', 'point_labels', 'masks') if k not in gt]
        if missing:
            raise KeyError(
                f'InteractiveSAM needs gt_instances.{", ".join(missing)} (first clicks from '
                'PointPromptsFromGT and ground-truth masks from LoadAnnotations(with_mask=True))'
            )
        shape = tuple(torch.as_tensor(gt.points).shape)
        if len(shape) != 3 or shape[1:] != (1, 2):
            raise ValueError(f'gt_instances.points must have shape (N, 1, 2), got {shape}')
        return gt

    @torch.no_grad()
    def _click_loop(self, embedding: torch.Tensor, sample: DetDataSample) -> InstanceData:
        # imported here so that `import mmsam` does not load mmdet's evaluation package
        from ...evaluation.functional import mask_iou, next_click, to_bool_masks

        gt = self._check_sample(sample)
        device = embedding.device
        ori_shape = tuple(int(s) for s in sample.metainfo['ori_shape'][:2])
        img_shape = tuple(int(s) for s in sample.metainfo['img_shape'][:2])
        num_out = self.num_mask_outputs
        n, k_max = len(gt), self.num_clicks
        h, w = ori_shape
        gt_masks = to_bool_masks(gt.masks).to(device)
        if tuple(gt_masks.shape) != (n, h, w):
            raise ValueError(
                f'gt_instances.masks must have shape {(n, h, w)}, got {tuple(gt_masks.shape)}'
            )
        gt_np = gt_masks.cpu().numpy()

        coords = torch.zeros((n, k_max, 2), dtype=torch.float32, device=device)
        labels = torch.full((n, k_max), -1, dtype=torch.int64, device=device)
        coords[:, 0] = torch.as_tensor(gt.points, dtype=torch.float32, device=device)[:, 0]
        labels[:, 0] = torch.as_tensor(gt.point_labels, device=device).reshape(n)
        ious = torch.zeros((n, k_max), dtype=torch.float64)
        oracle = torch.zeros((n, k_max), dtype=torch.float64)
        res = InstanceData()
        res.masks = torch.zeros((n, h, w), dtype=torch.bool, device=device)
        res.scores = torch.zeros((n,), device=device)
        res.multimask_masks = torch.zeros((n, num_out, h, w), dtype=torch.bool, device=device)
        res.multimask_scores = torch.zeros((n, num_out), device=device)
        logit_size = tuple(self.prompt_encoder.mask_input_size)
        res.mask_logits = torch.zeros((n, num_out, *logit_size), device=device)
        res.multimask_output = torch.zeros((n,), dtype=torch.bool, device=device)
        chosen_logits = torch.zeros((n, 1, *logit_size), device=device)

        active = np.arange(n)
        for k in range(k_max):
            if k > 0:
                ious[:, k], oracle[:, k] = ious[:, k - 1], oracle[:, k - 1]
                still = []
                pred_np = res.masks[torch.as_tensor(active, device=device)].cpu().numpy()
                for j, pred in zip(active, pred_np):
                    click = next_click(gt_np[j], pred)
                    if click is not None:
                        coords[j, k] = torch.tensor(click[:2], dtype=torch.float32)
                        labels[j, k] = click[2]
                        still.append(j)
                active = np.asarray(still, dtype=np.int64)
            if len(active) == 0:
                continue
            sel = torch.as_tensor(active, device=device)
            points = (
                apply_coords(coords[sel, : k + 1], ori_shape, self.image_size),
                labels[sel, : k + 1],
            )
            mask_inputs = None if k == 0 else chosen_logits[sel]
            low_res, iou, multi = self.decode_prompts(
                embedding, points=points, mask_inputs=mask_inputs
            )
            all_masks = self.upscale_masks(low_res, multi, img_shape, ori_shape)
            out_ious = mask_iou(all_masks, gt_masks[sel][:, None]).cpu()  # (n_active, C)
            best, best_scores, best_masks, best_logits = select_best_candidate(
                iou, all_masks, low_res
            )
            ious[active, k] = out_ious[torch.arange(len(sel)), best.cpu()]
            oracle[active, k] = out_ious.max(dim=1).values
            res.masks[sel] = best_masks
            res.scores[sel] = best_scores
            res.multimask_masks[sel] = all_masks
            res.multimask_scores[sel] = iou
            res.mask_logits[sel] = low_res
            res.multimask_output[sel] = multi
            chosen_logits[sel] = best_logits[:, None]  # fed back next round
        return self._finish(res, gt, ious, oracle, coords, labels)

    @staticmethod
    def _finish(res, gt, ious, oracle, coords, labels) -> InstanceData:
        n = len(gt)
        device = res.masks.device
        if 'labels' in gt and len(gt.labels) == n:
            res.labels = torch.as_tensor(gt.labels, device=device).long()
        else:
            res.labels = torch.zeros(n, dtype=torch.int64, device=device)
        res.bboxes = masks_to_boxes(res.masks)
        res.click_ious = ious
        res.click_oracle_ious = oracle
        res.click_points = coords
        res.click_labels = labels
        return res
