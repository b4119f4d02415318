"""SAM-HQ's mask decoder: SAM's decoder with a high-quality output token.

HQ-SAM (Ke et al., "Segment Anything in High Quality", NeurIPS 2023,
https://github.com/SysCV/sam-hq) keeps SAM's decoder frozen and adds:

* an HQ output token (``hf_token``) that goes through the two-way transformer with
  SAM's tokens, and its own hypernetwork MLP (``hf_mlp``);
* an HQ feature map: the image encoder's *early* feature (ViT: the output of the first
  global-attention block; Light HQ-SAM's TinyViT: the second stage's output) upscaled 4x
  (``compress_vit_feat``) plus the final image embedding upscaled 4x
  (``embedding_encoder``), to which the decoder's own upscaled features add after two
  3x3 convolutions (``embedding_maskfeature``).

The HQ token's classifier applied to the HQ feature map gives the HQ mask logits;
SAM's chosen output (token 0, or the best of tokens 1..3 by predicted IoU) is added to
them unless ``hq_token_only``. Either way the decoder returns **one** mask per prompt,
as the official ``MaskDecoderHQ`` does; its score is SAM's predicted IoU of the chosen
token.

The early feature travels with the image embedding: :class:`~mmsam.models.SAM` sets the
encoder's ``out_interm`` and hands the decoder ``(N, 256 + interm_dims, E, E)``, the
final embedding followed by the early feature (:meth:`SAMHQMaskDecoder.pack_image_features`),
so every API that keeps an image embedding (predictor, AMG, embedding store, ONNX
encoder output) keeps SAM-HQ's whole image state unchanged.
"""

from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS

from ..layers import LayerNorm2d
from .sam_mask_decoder import MLP, SAMMaskDecoder


@MODELS.register_module()
class SAMHQMaskDecoder(SAMMaskDecoder):
    """SAM-HQ's mask decoder (the official ``MaskDecoderHQ``), one mask per prompt.

    Args:
        interm_dims (int): Channels of the encoder's early feature: the ViT's width
            (768 / 1024 / 1280 for B / L / H) or 160 for Light HQ-SAM's TinyViT-5M.
            Defaults to 768.
        hq_token_only (bool): Return the HQ token's mask alone instead of SAM's chosen
            mask plus the HQ mask (the official predictor's default is False). Can be
            overridden per call. Defaults to False.
        **kwargs: :class:`SAMMaskDecoder`'s arguments (``transformer_dims``,
            ``transformer``, ``num_multimask_outputs``, ``iou_head_depth``, ...,
            ``fast_path``: the transformer runs once for the shared image, the HQ
            upscaling as in the reference). :meth:`SAMMaskDecoder.predict_masks` runs
            with this decoder's HQ token (:meth:`output_token_weights`), HQ feature map
            (:meth:`image_inputs`) and HQ mask (:meth:`mask_head`); it returns
            ``T + 1`` logits per prompt (SAM's ``T`` outputs, then the HQ output).

    Shape:
        ``image_embeddings`` is ``(1 or N, transformer_dims + interm_dims, E, E)``;
        the outputs are logits ``(N, 1, 4E, 4E)`` and scores ``(N, 1)``.
    """

    #: :class:`~mmsam.models.SAM` reads this: the encoder must return its early feature
    #: and the image embedding carries it (:meth:`pack_image_features`).
    uses_interm_features = True
    #: Candidates per prompt of :meth:`fuse_outputs` (single output, best multimask output).
    num_fused_outputs = 2

    def __init__(self, interm_dims: int = 768, hq_token_only: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        dims = self.transformer_dims
        self.interm_dims = int(interm_dims)
        self.hq_token_only = bool(hq_token_only)
        self.hf_token = nn.Embedding(1, dims)
        self.hf_mlp = MLP(dims, dims, dims // 8, 3)
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(self.interm_dims, dims, kernel_size=2, stride=2),
            LayerNorm2d(dims, eps=1e-6),
            nn.GELU(),
            nn.ConvTranspose2d(dims, dims // 8, kernel_size=2, stride=2),
        )
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(dims, dims // 4, kernel_size=2, stride=2),
            LayerNorm2d(dims // 4, eps=1e-6),
            nn.GELU(),
            nn.ConvTranspose2d(dims // 4, dims // 8, kernel_size=2, stride=2),
        )
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(dims // 8, dims // 4, 3, 1, 1),
            LayerNorm2d(dims // 4, eps=1e-6),
            nn.GELU(),
            nn.Conv2d(dims // 4, dims // 8, 3, 1, 1),
        )

    @property
    def image_feature_dims(self) -> int:
        """Channels of the image embedding this decoder takes (final + early feature)."""
        return self.transformer_dims + self.interm_dims

    def num_outputs(self, multimask_output: bool) -> int:
        """Masks per prompt: always 1 (SAM's chosen output fused with the HQ output)."""
        return 1

    @staticmethod
    def pack_image_features(embedding: torch.Tensor, interm: torch.Tensor) -> torch.Tensor:
        """The image embedding SAM-HQ's APIs carry: ``(B, C, E, E)`` and ``(B, V, E, E)``
        concatenated to ``(B, C + V, E, E)``."""
        if embedding.shape[0] != interm.shape[0] or embedding.shape[2:] != interm.shape[2:]:
            raise ValueError(
                f'the early feature {tuple(interm.shape)} does not match the image '
                f'embedding {tuple(embedding.shape)} (same batch and E x E grid expected)'
            )
        return torch.cat([embedding, interm.to(embedding.dtype)], dim=1)

    def split_image_features(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Undo :meth:`pack_image_features`: ``(B, C + V, E, E)`` to ``(B, C, E, E)`` and
        ``(B, V, E, E)``; refuses an embedding without the early feature."""
        if features.dim() != 4 or features.shape[1] != self.image_feature_dims:
            raise ValueError(
                f'SAM-HQ takes image features of shape (B, {self.image_feature_dims}, E, E) '
                f"(the {self.transformer_dims}-channel embedding followed by the encoder's "
                f'{self.interm_dims}-channel early feature), got {tuple(features.shape)}: '
                'compute them with this model (SAM.extract_feat), not with a plain SAM'
            )
        return features[:, : self.transformer_dims], features[:, self.transformer_dims :]

    def output_token_weights(self) -> torch.Tensor:
        """SAM's output tokens followed by the HQ token: ``(T' + 1, C)``."""
        return torch.cat([super().output_token_weights(), self.hf_token.weight], dim=0)

    def image_inputs(self, image_embeddings: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The final embedding for the transformer and the HQ feature map for
        :meth:`mask_head`: the final embedding and the early feature, both upscaled 4x.

        Args:
            image_embeddings (Tensor): ``(1 or N, C + V, h, w)``
                (:meth:`pack_image_features`).

        Returns:
            tuple[Tensor, Tensor]: ``(1 or N, C, h, w)`` and ``(1 or N, C / 8, 4h, 4w)``.
        """
        embedding, interm = self.split_image_features(image_embeddings)
        return embedding, self.embedding_encoder(embedding) + self.compress_vit_feat(interm)

    def hypernetwork_weights(self, hs: torch.Tensor) -> torch.Tensor:
        """SAM's mask tokens' classifiers followed by the HQ token's.

        Args:
            hs (Tensor): Transformer tokens ``(N, T', C)``: the IoU token, the
                ``num_mask_tokens`` mask tokens, the HQ token, the prompts.

        Returns:
            Tensor: ``(N, num_mask_tokens + 1, C / 8)``.
        """
        sam = super().hypernetwork_weights(hs)
        hq = self.hf_mlp(hs[:, 1 + self.num_mask_tokens])
        return torch.cat([sam, hq[:, None]], dim=1)

    def mask_head(
        self,
        hs: torch.Tensor,
        feats: torch.Tensor,
        size: Tuple[int, int],
        image_context: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`SAMMaskDecoder.mask_head` with the HQ output: logits ``(N, T + 1, 4h,
        4w)`` (SAM's ``T`` outputs, then the HQ output, whose logits do not include SAM's)
        and IoU predictions ``(N, T)``; ``image_context`` is the HQ feature map ``(1 or N,
        C / 8, 4h, 4w)``. The upscaling runs as in the reference on either path."""
        upscaled_sam = self.upscale(feats.expand(len(hs), -1, -1), size)
        upscaled_hq = self.embedding_maskfeature(upscaled_sam) + image_context
        hyper_in = self.hypernetwork_weights(hs)
        b, c, h, w = upscaled_sam.shape
        t = self.num_mask_tokens
        masks_sam = hyper_in[:, :t] @ upscaled_sam.view(b, c, h * w)
        masks_hq = hyper_in[:, t:] @ upscaled_hq.reshape(b, c, h * w)
        masks = torch.cat([masks_sam, masks_hq], dim=1).view(b, t + 1, h, w)
        return masks, self.iou_prediction_head(hs[:, 0, :])

    def select_outputs(
        self,
        masks: torch.Tensor,
        iou_pred: torch.Tensor,
        multimask_output: bool,
        hq_token_only: Optional[bool] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One mask per prompt (what :meth:`forward` returns): logits ``(N, 1, h, w)``
        and the chosen SAM output's predicted IoU ``(N, 1)``. ``multimask_output`` chooses
        SAM's output, the best of tokens 1.. by predicted IoU (True) or token 0 (False);
        :meth:`fuse_outputs` adds the HQ output to it (or, ``hq_token_only``, takes the
        HQ output alone; None: the decoder's setting)."""
        fused = self.fuse_outputs(masks, iou_pred, hq_token_only)
        return super().select_outputs(*fused, multimask_output)

    def fuse_outputs(
        self, masks: torch.Tensor, iou_pred: torch.Tensor, hq_token_only: Optional[bool] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """SAM-HQ's two candidate outputs per prompt (what :meth:`forward` chooses from,
        and what the ONNX decoder graph returns).

        Args:
            masks (Tensor): :meth:`predict_masks`' logits ``(N, T + 1, h, w)``.
            iou_pred (Tensor): its IoU predictions ``(N, T)``.
            hq_token_only (bool, optional): The HQ logits alone instead of SAM's chosen
                output plus the HQ logits; None: the decoder's setting.

        Returns:
            tuple[Tensor, Tensor]: logits ``(N, 2, h, w)`` and scores ``(N, 2)``: index 0
            fuses SAM's single output (token 0), index 1 the best of SAM's multimask
            outputs by predicted IoU (:attr:`num_fused_outputs` candidates).
        """
        t = self.num_mask_tokens
        best_iou, best = iou_pred[:, 1:t].max(dim=1)
        index = (best + 1).view(-1, 1, 1, 1).expand(-1, 1, *masks.shape[2:])
        sam = torch.cat([masks[:, :1], torch.gather(masks, 1, index)], dim=1)
        hq = masks[:, t : t + 1]
        hq_only = self.hq_token_only if hq_token_only is None else hq_token_only
        fused = hq.expand(-1, 2, -1, -1) if hq_only else sam + hq
        return fused, torch.stack([iou_pred[:, 0], best_iou], dim=1)
