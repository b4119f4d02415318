"""SAM's training step: simulated interactive prompting and the per-round losses.

:class:`SAMInteractiveLoss` is what ``SAM.loss`` delegates to. For each image it takes
the ground-truth instances (at most ``max_instances_per_image``, drawn at random),
gives each a first prompt (a noisy box or a point inside its mask,
:class:`PromptSimulator`) and runs the rounds of the schedule: each round decodes all
instances with their prompts so far and the previous round's low-resolution logits as
mask prompt, scores the upscaled logits against the ground truth
(:class:`mmsam.models.losses.SAMMaskLoss`) and draws the next point from the error
region. An ambiguous prompt (one point, no box, no mask: ``SAM.ambiguous_prompts``,
the rule of inference's ``multimask_output='auto'``) is decoded with the three
multimask outputs and supervised through the best of them; every other round uses the
single output.

Memory: kept for the backward pass, each round's mask-decoder activations (about
0.1 GB per instance at 1024 px: image-sized attention inputs and the upscaled
embedding) and the paper's loss on logits upscaled to the image (the full-size maps and
the loss's intermediates of their size) add up over rounds and instances: 11 rounds of
8 instances of ViT-B did not fit 13 GB. With ``checkpoint_rounds`` (the default) each
round's decoding, upscaling and loss run inside ``torch.utils.checkpoint``: only its
inputs and low-resolution outputs are kept, and the backward pass recomputes one round
at a time (same values and gradients, one more decoder pass per round).

Randomness: each image's draws come from its own generator, seeded from the base seed,
the training iteration and the image's identity, so that a run gives the same prompts
whichever process, batch position or device handles an image (the same loss curve on
one process as on several with the same total batch).
"""

import hashlib
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.logging import MessageHub
from torch.utils.checkpoint import checkpoint

from ...evaluation.functional import to_bool_masks
from ...structures import masks_to_boxes, upscale_mask_logits
from ...structures.transforms import apply_boxes, apply_coords
from ..utils.embedding_cache import EmbeddingCache, weights_digest
from .prompt_simulation import POINT, PromptSimulator, sample_error_points

LOSS_KEYS = ('loss_mask_focal', 'loss_mask_dice', 'loss_iou')


def sample_seed(base_seed: int, iteration: int, metainfo: dict) -> int:
    """A 63-bit seed from the base seed, the iteration and an image's identity."""
    ident = (
        metainfo.get('img_id'),
        metainfo.get('img_path'),
        metainfo.get('flip'),
        metainfo.get('flip_direction'),
    )
    key = f'{base_seed}:{iteration}:{ident}'.encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], 'little') >> 1


def current_iteration() -> int:
    """The runner's training iteration (mmengine's ``MessageHub`` ``iter``; 0 outside)."""
    try:
        return int(MessageHub.get_current_instance().get_info('iter', 0) or 0)
    except Exception:  # no runner: a bare call of model.loss
        return 0


class SAMInteractiveLoss:
    """The losses of SAM's simulated interactive training (see the module docstring).

    Args:
        max_instances_per_image (int, optional): Instances per image drawn at random
            when an image has more (bounds memory). None keeps all. Defaults to 16.
        prompt_simulation (dict, optional): Arguments of :class:`PromptSimulator`.
        loss (dict, optional): Config of the per-round loss (default
            ``dict(type='SAMMaskLoss')``).
        seed (int, optional): Base seed of the prompt draws; None uses
            ``torch.initial_seed()`` (the runner's ``randomness.seed``).
        embedding_cache (dict, optional): ``dict(cache_dir=..., dtype='float16')``:
            keep image embeddings on disk when no encoder parameter is trained.
        low_res_loss (bool): Score the decoder's low-resolution logits against the
            ground truth downsampled to them (``S / 4``) instead of upscaled logits
            against the full-size ground truth (the paper). 16x less loss memory: the
            full-size loss keeps ``rounds x instances x outputs`` full-size maps for the
            backward pass (about 13 GB for 8 instances, 11 rounds at 1024 px on the
            CPU). Defaults to False.
        checkpoint_rounds (bool): Run each round's decoding, upscaling and loss inside
            ``torch.utils.checkpoint``: the backward pass keeps only the rounds' inputs
            and low-resolution outputs and recomputes one round at a time. Same values
            and gradients; costs one more decoder pass per round. Defaults to True.
    """

    def __init__(
        self,
        max_instances_per_image: Optional[int] = 16,
        prompt_simulation: Optional[dict] = None,
        loss: Optional[dict] = None,
        seed: Optional[int] = None,
        embedding_cache: Optional[dict] = None,
        low_res_loss: bool = False,
        checkpoint_rounds: bool = True,
    ) -> None:
        if max_instances_per_image is not None and int(max_instances_per_image) < 1:
            raise ValueError(
                f'max_instances_per_image must be None or >= 1, got {max_instances_per_image}'
            )
        self.max_instances = (
            None if max_instances_per_image is None else int(max_instances_per_image)
        )
        self.simulator = PromptSimulator(**(prompt_simulation or {}))
        self.criterion: nn.Module = MODELS.build(loss or dict(type='SAMMaskLoss'))
        self.seed = seed
        self.cache = EmbeddingCache(**embedding_cache) if embedding_cache else None
        self.low_res_loss = bool(low_res_loss)
        self.checkpoint_rounds = bool(checkpoint_rounds)
        self._weights_key: Optional[str] = None

    # ------------------------------------------------------------------ embeddings
    def image_embeddings(self, model: nn.Module, batch_inputs: torch.Tensor) -> torch.Tensor:
        """``(B, 256, E, E)`` embeddings; without gradient (and cached if configured)
        when no image-encoder parameter requires one."""
        if any(p.requires_grad for p in model.backbone.parameters()):
            return model.extract_feat(batch_inputs)[0]
        with torch.no_grad():
            if self.cache is None:
                return model.extract_feat(batch_inputs)[0]
            if self._weights_key is None:
                self._weights_key = weights_digest(model.backbone)
            return self.cache.get(
                batch_inputs, self._weights_key, lambda x: model.extract_feat(x)[0]
            )

    # ------------------------------------------------------------------ losses
    def __call__(
        self, model: nn.Module, batch_inputs: torch.Tensor, batch_data_samples: List
    ) -> Dict[str, torch.Tensor]:
        """The loss dict of a batch (each term the mean over images of the mean over
        that image's instances and rounds; an image without instances adds zero)."""
        embeddings = self.image_embeddings(model, batch_inputs)
        base_seed = torch.initial_seed() if self.seed is None else int(self.seed)
        iteration = current_iteration()
        totals = [None] * len(LOSS_KEYS)
        for i, sample in enumerate(batch_data_samples):
            generator = torch.Generator(device=embeddings.device)
            generator.manual_seed(sample_seed(base_seed, iteration, sample.metainfo))
            terms = self._image_losses(model, embeddings[i : i + 1], sample, generator)
            if terms is None:
                continue
            totals = [t if acc is None else acc + t for acc, t in zip(totals, terms)]
        if totals[0] is None:  # no instance in the batch: zero, still tied to the graph
            zero = sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
            return {key: zero for key in LOSS_KEYS}
        return {key: t / len(batch_data_samples) for key, t in zip(LOSS_KEYS, totals)}

    def _ground_truth(
        self, sample, device: torch.device, generator: torch.Generator
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        gt = sample.gt_instances if 'gt_instances' in sample else None
        if gt is None or 'masks' not in gt:
            raise KeyError(
                'SAM training needs gt_instances.masks: load the annotations with '
                'LoadAnnotations(with_mask=True, poly2mask=True) and pack them with '
                'PackSAMInputs'
            )
        masks = to_bool_masks(gt.masks).to(device)
        ori_shape = tuple(sample.metainfo['ori_shape'][:2])
        if tuple(masks.shape[-2:]) != ori_shape:
            raise ValueError(
                f'gt_instances.masks have size {tuple(masks.shape[-2:])} but the image is '
                f'{ori_shape}: resize the masks with the image in the pipeline'
            )
        masks = masks[masks.flatten(1).any(dim=1)]
        if self.max_instances is not None and len(masks) > self.max_instances:
            keep = torch.randperm(len(masks), generator=generator, device=device)
            masks = masks[keep[: self.max_instances].sort().values]
        return masks, masks_to_boxes(masks).float()

    def _image_losses(self, model, embedding, sample, generator):
        masks, boxes = self._ground_truth(sample, embedding.device, generator)
        if len(masks) == 0:
            return None
        plan = self.simulator.round_plan(generator)
        use_box, noisy, first_points = self.simulator.first_prompts(masks, boxes, generator)
        frames = (
            tuple(sample.metainfo['ori_shape'][:2]),
            tuple(sample.metainfo['img_shape'][:2]),
        )
        totals = [0.0] * len(LOSS_KEYS)
        for group_is_box in (True, False):
            index = torch.nonzero(use_box == group_is_box).flatten()
            if len(index) == 0:
                continue
            terms = self._run_rounds(
                model,
                embedding,
                masks[index],
                noisy[index] if group_is_box else None,
                None if group_is_box else first_points[index],
                plan,
                frames,
                generator,
            )
            totals = [acc + t for acc, t in zip(totals, terms)]
        denom = len(masks) * len(plan)
        return [t / denom for t in totals]

    def _run_rounds(self, model, embedding, gt, boxes, first_points, plan, frames, generator):
        """Sums over instances and rounds of the three loss terms, for one prompt group."""
        ori_shape, img_shape = frames
        size = model.image_size
        n = len(gt)
        rows = torch.arange(n, device=gt.device)
        boxes_in = None if boxes is None else apply_boxes(boxes, ori_shape, size)
        # points are kept in the input frame
        coords = gt.new_zeros((n, 0, 2), dtype=torch.float32)
        labels = gt.new_zeros((n, 0), dtype=torch.int64)
        if first_points is not None:
            coords = apply_coords(first_points[:, None], ori_shape, size)
            labels = labels.new_ones((n, 1))
        target = self._low_res_target(gt, img_shape, size) if self.low_res_loss else gt
        mask_input = None
        totals = [0.0, 0.0, 0.0]
        for r in range(len(plan)):
            points = (coords, labels) if coords.shape[1] else None
            prompts = (points, boxes_in, mask_input)
            focal, dice, iou_loss, best, low_res = self._round(
                model, embedding, prompts, target, frames
            )
            for k, term in enumerate((focal, dice, iou_loss)):
                totals[k] = totals[k] + term.sum()
            mask_input = low_res[rows, best][:, None].detach()
            if r + 1 < len(plan) and plan[r + 1] == POINT:
                with torch.no_grad():
                    logits = mask_input  # the kept output, (N, 1, S / 4, S / 4)
                    if not self.low_res_loss:
                        logits = upscale_mask_logits(logits, size, img_shape, ori_shape)
                pred = logits[:, 0] > self.criterion.mask_threshold
                new_coords, new_labels = sample_error_points(pred, target, generator)
                if self.low_res_loss:  # low-res pixel centres in the input frame
                    new_coords = (new_coords + 0.5) * (size / low_res.shape[-1]) - 0.5
                else:
                    new_coords = apply_coords(new_coords, ori_shape, size)
                coords = torch.cat([coords, new_coords[:, None]], dim=1)
                labels = torch.cat([labels, new_labels[:, None]], dim=1)
        return totals

    @staticmethod
    def _multimask(model, points, boxes, mask_input, n: int) -> bool:
        """Whether a round's prompts get the multimask outputs (``SAM.ambiguous_prompts``;
        all instances of a group have prompts of the same kind)."""
        flags = model.ambiguous_prompts(points, boxes, mask_input, n)
        if not (flags == flags[0]).all():
            raise RuntimeError('a prompt group mixes ambiguous and unambiguous prompts')
        return bool(flags[0])

    def _round(self, model, embedding, prompts, target, frames):
        """One round: decode the prompts, score the logits in the loss frame (the
        low-resolution ones with ``low_res_loss``, else upscaled to the image) with
        :class:`SAMMaskLoss`; inside ``torch.utils.checkpoint`` when
        ``checkpoint_rounds``.

        Returns:
            tuple: focal, dice, IoU loss ``(N,)``, the kept output ``(N,)`` and the
            low-resolution logits ``(N, C, S / 4, S / 4)``.
        """
        points, boxes, mask_input = prompts
        n = len(target)
        multimask = self._multimask(model, points, boxes, mask_input, n)
        ori_shape, img_shape = frames

        def decode_and_score():
            low_res, iou_pred = model.predict_prompts(
                embedding, points, boxes, mask_input, multimask_output=multimask
            )
            logits = low_res
            if not self.low_res_loss:
                logits = upscale_mask_logits(low_res, model.image_size, img_shape, ori_shape)
            return (*self.criterion(logits, iou_pred, target), low_res)

        if not (self.checkpoint_rounds and torch.is_grad_enabled()):
            return decode_and_score()
        return checkpoint(decode_and_score, use_reentrant=False)

    @staticmethod
    def _low_res_target(gt: torch.Tensor, img_shape, size: int) -> torch.Tensor:
        """Ground truth in the decoder's low-resolution frame ``(N, S / 4, S / 4)``: resized
        to the input frame, zero-padded to ``S x S``, area-averaged and thresholded at 0.5."""
        h, w = int(img_shape[0]), int(img_shape[1])
        masks = F.interpolate(gt[:, None].float(), size=(h, w), mode='nearest')
        masks = F.pad(masks, (0, size - w, 0, size - h))
        return F.interpolate(masks, size=(size // 4, size // 4), mode='area')[:, 0] > 0.5
