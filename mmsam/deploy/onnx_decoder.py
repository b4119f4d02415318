"""SAM's prompt encoder, mask decoder and mask upscaling as one traceable module."""

import copy
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..structures.mask_postprocess import calculate_stability_score


class SAMOnnxDecoder(nn.Module):
    """Prompt encoder + mask decoder + upscaling to the original size, for ONNX export.

    Inputs and outputs are those of the official ``SamOnnxModel``, so a graph
    exported from it is a drop-in replacement (e.g. for the official web demo).
    Prompts are points in the *input frame* (resized so that the longest side is
    ``image_size``) with labels: 1 foreground, 0 background, -1 padding, 2 and 3
    the top-left and bottom-right corners of a box. Without a box, callers append
    one padding point ``(0, 0)`` with label -1, as the official demo does.

    The prompt encoder and mask decoder are copied, so that ``gelu_approximate``
    does not change the model given.

    Args:
        model (mmsam.models.SAM): The model (its ``prompt_encoder``,
            ``mask_decoder``, ``image_size`` and ``mask_threshold`` are used).
        return_single_mask (bool): Return one mask per prompt: token 0 when more
            than two points (padding included) are given, else the multimask
            output with the best score (the official rule).
        use_stability_score (bool): Replace the predicted IoU by the stability score
            of the low-resolution logits (offset 1.0).
        return_extra_metrics (bool): Also return the stability scores and areas of
            the upscaled masks.
        gelu_approximate (bool): Use the tanh approximation of GELU (for runtimes
            without ``Erf``).
    """

    stability_score_offset = 1.0

    def __init__(
        self,
        model: nn.Module,
        return_single_mask: bool = False,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
        gelu_approximate: bool = False,
    ) -> None:
        super().__init__()
        self.prompt_encoder = copy.deepcopy(model.prompt_encoder)
        self.mask_decoder = copy.deepcopy(model.mask_decoder)
        self.image_size = int(model.image_size)
        self.mask_threshold = float(model.mask_threshold)
        self.return_single_mask = return_single_mask
        self.use_stability_score = use_stability_score
        self.return_extra_metrics = return_extra_metrics
        if gelu_approximate:
            for module in self.modules():
                if isinstance(module, nn.GELU):
                    module.approximate = 'tanh'
        self.eval()

    @property
    def output_names(self) -> Tuple[str, ...]:
        """Names of the graph outputs, in order."""
        if self.return_extra_metrics:
            return ('masks', 'iou_predictions', 'stability_scores', 'areas', 'low_res_masks')
        return ('masks', 'iou_predictions', 'low_res_masks')

    def embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """Embed labelled points and box corners without control flow.

        Args:
            point_coords (Tensor): ``(N, P, 2)`` input-frame ``(x, y)``.
            point_labels (Tensor): ``(N, P)`` float, -1..3.

        Returns:
            Tensor: ``(N, P, C)``.
        """
        pe = self.prompt_encoder
        size = (self.image_size, self.image_size)
        embedding = pe.pe_layer.forward_with_coords(point_coords + 0.5, size)
        labels = point_labels.unsqueeze(-1)
        embedding = embedding * (labels != -1).to(embedding.dtype)
        embedding = embedding + pe.not_a_point_embed.weight * (labels == -1).to(embedding.dtype)
        for i, point_embedding in enumerate(pe.point_embeddings):
            embedding = embedding + point_embedding.weight * (labels == i).to(embedding.dtype)
        return embedding

    def embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """Dense embedding: of ``mask_input (N, 1, 4E, 4E)`` if ``has_mask_input`` is 1.

        Returns:
            Tensor: ``(N, C, E, E)``.
        """
        pe = self.prompt_encoder
        has_mask = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return has_mask * pe.embed_masks(mask_input) + (1 - has_mask) * no_mask

    def select_single_mask(
        self, masks: torch.Tensor, scores: torch.Tensor, num_points: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Keep token 0 if ``num_points > 2.5``, else the best of the others.

        Args:
            masks (Tensor): ``(N, T, h, w)``.
            scores (Tensor): ``(N, T)``.
            num_points (int | Tensor): ``P``, padding included.

        Returns:
            tuple[Tensor, Tensor]: ``(N, 1, h, w)`` and ``(N, 1)``.
        """
        bias = torch.zeros_like(scores[:1])
        bias[:, 0] = 1000.0
        best = torch.argmax(scores + (num_points - 2.5) * bias, dim=1)  # (N,)
        index = best.reshape(-1, 1)
        scores = torch.gather(scores, 1, index)
        index = index.reshape(-1, 1, 1, 1).expand(-1, 1, masks.shape[2], masks.shape[3])
        return torch.gather(masks, 1, index), scores

    def upscale_masks(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits ``(N, T, 4E, 4E)`` to ``(N, T, H, W)`` for ``(H, W)``.

        Same as ``SAM.postprocess_masks`` with the input size computed in the graph.
        """
        s = self.image_size
        masks = F.interpolate(masks, size=(s, s), mode='bilinear', align_corners=False)
        orig = orig_im_size.to(torch.float32)
        input_size = torch.floor(orig * (s / torch.max(orig)) + 0.5).to(torch.int64)
        masks = masks[..., : input_size[0], : input_size[1]]
        orig = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(orig[0], orig[1]), mode='bilinear', align_corners=False)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> Tuple[torch.Tensor, ...]:
        """Decode masks for one image.

        Args:
            image_embeddings (Tensor): ``(1, 256, E, E)`` float32 (SAM-HQ:
                ``(1, 256 + V, E, E)``, the embedding and the encoder's early feature).
            point_coords (Tensor): ``(N, P, 2)`` float32, input frame.
            point_labels (Tensor): ``(N, P)`` float32.
            mask_input (Tensor): ``(N, 1, 4E, 4E)`` float32 low-resolution logits.
            has_mask_input (Tensor): ``(1,)`` float32, 1 to use ``mask_input``.
            orig_im_size (Tensor): ``(2,)`` float32 ``(H, W)``.

        Returns:
            tuple[Tensor, ...]: ``masks (N, T, H, W)`` logits, ``iou_predictions (N, T)``,
            [``stability_scores (N, T)``, ``areas (N, T)`` int64,]
            ``low_res_masks (N, T, 4E, 4E)``; ``T = 4`` (token 0 the single-mask output,
            1..3 the multimask outputs; SAM-HQ: ``T = 2``, the single and the best
            multimask output each plus the HQ output, or the HQ output alone if the
            decoder's ``hq_token_only``), or 1 with ``return_single_mask``.
        """
        sparse = self.embed_points(point_coords, point_labels)
        dense = self.embed_mask(mask_input, has_mask_input)
        masks, scores = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        fuse = getattr(self.mask_decoder, 'fuse_outputs', None)
        if fuse is not None:  # SAM-HQ: two candidates, SAM's single / best output + HQ
            masks, scores = fuse(masks, scores)
        if self.use_stability_score:
            scores = calculate_stability_score(
                masks, self.mask_threshold, self.stability_score_offset
            )
        if self.return_single_mask:
            masks, scores = self.select_single_mask(masks, scores, point_coords.shape[1])
        upscaled = self.upscale_masks(masks, orig_im_size)
        if self.return_extra_metrics:
            stability = calculate_stability_score(
                upscaled, self.mask_threshold, self.stability_score_offset
            )
            areas = (upscaled > self.mask_threshold).sum((-1, -2))
            return upscaled, scores, stability, areas, masks
        return upscaled, scores, masks
