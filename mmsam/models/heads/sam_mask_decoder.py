"""SAM's mask decoder: prompt tokens + image embedding to mask logits and IoU scores."""

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS

from ..layers import LayerNorm2d, TwoWayTransformer
from . import mask_decoder_fast_path as fast_path


class MLP(nn.Module):
    """A stack of linear layers with ReLU between them.

    Args:
        in_dims (int): Input channels.
        hidden_dims (int): Hidden channels.
        out_dims (int): Output channels.
        num_layers (int): Number of linear layers.
        sigmoid_output (bool): Apply a sigmoid to the output. Defaults to False.
    """

    def __init__(
        self,
        in_dims: int,
        hidden_dims: int,
        out_dims: int,
        num_layers: int,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims = [in_dims] + [hidden_dims] * (num_layers - 1) + [out_dims]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to ``(..., in_dims)``; returns ``(..., out_dims)``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


@MODELS.register_module()
class SAMMaskDecoder(nn.Module):
    """Predict masks from an image embedding and prompt embeddings.

    One IoU token and ``num_multimask_outputs + 1`` mask tokens are prepended to
    the prompt tokens; a two-way transformer mixes them with the image; the
    image features are upscaled 4x and each mask token, through its own
    hypernetwork MLP, becomes a per-pixel linear classifier. Token 0 is the
    single-mask output, tokens 1.. the multimask outputs.

    Args:
        transformer_dims (int): Channels of tokens and image embedding. Defaults to 256.
        transformer (dict): Config of :class:`TwoWayTransformer`. Defaults to SAM's
            (depth 2, 8 heads, MLP 2048).
        num_multimask_outputs (int): Masks predicted to disambiguate. Defaults to 3.
        act_layer (type): Activation of the upscaling. Defaults to ``nn.GELU``.
        iou_head_depth (int): Layers of the IoU head. Defaults to 3.
        iou_head_hidden_dims (int): Hidden channels of the IoU head. Defaults to 256.
        fast_path (bool): Run :meth:`predict_masks` through
            :mod:`mmsam.models.heads.mask_decoder_fast_path` (image shared by the
            prompts, folded few-token attention, prompt chunks, matrix-product
            upscaling; same results, same parameters) instead of the reference-shaped
            modules. Defaults to True.
    """

    def __init__(
        self,
        transformer_dims: int = 256,
        transformer: Optional[dict] = None,
        num_multimask_outputs: int = 3,
        act_layer: type = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dims: int = 256,
        fast_path: bool = True,
    ) -> None:
        super().__init__()
        self.fast_path = bool(fast_path)
        transformer_cfg = dict(depth=2, embed_dims=transformer_dims, num_heads=8, mlp_dims=2048)
        transformer_cfg.update(transformer or {})
        transformer_cfg.pop('type', None)
        self.transformer_dims = transformer_dims
        self.transformer = TwoWayTransformer(**transformer_cfg)
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dims)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dims)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dims, transformer_dims // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dims // 4, eps=1e-6),
            act_layer(),
            nn.ConvTranspose2d(
                transformer_dims // 4, transformer_dims // 8, kernel_size=2, stride=2
            ),
            act_layer(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dims, transformer_dims, transformer_dims // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dims, iou_head_hidden_dims, self.num_mask_tokens, iou_head_depth
        )

    @property
    def image_feature_dims(self) -> int:
        """Channels of the image embedding this decoder takes."""
        return self.transformer_dims

    def num_outputs(self, multimask_output: bool) -> int:
        """Masks per prompt: ``num_multimask_outputs``, or 1 without multimask output."""
        return self.num_multimask_outputs if multimask_output else 1

    @staticmethod
    def check_batch(n: int, **tensors: torch.Tensor) -> None:
        """Refuse a tensor whose batch is neither 1 (shared) nor ``n`` (one per prompt)."""
        for name, x in tensors.items():
            if x.shape[0] not in (1, n):
                raise ValueError(
                    f'{name} must have batch 1 or {n} (one per prompt), got {x.shape[0]}'
                )

    def output_token_weights(self) -> torch.Tensor:
        """The learned output tokens put before the prompt tokens: ``(T', C)``, the IoU
        token then the ``num_mask_tokens`` mask tokens."""
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def image_inputs(
        self, image_embeddings: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """From ``(1 or N, C', h, w)``: the embedding the transformer takes ``(1 or N, C,
        h, w)`` and what else :meth:`mask_head` needs (SAM: the input itself and None)."""
        return image_embeddings, None

    def hypernetwork_weights(self, hs: torch.Tensor) -> torch.Tensor:
        """Each mask token's per-pixel linear classifier.

        Args:
            hs (Tensor): Transformer tokens ``(N, T', C)`` (IoU token, mask tokens, ...).

        Returns:
            Tensor: ``(N, num_mask_tokens, C / 8)``.
        """
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        return torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )

    def upscale(self, feats: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """Image features ``(B, h * w, C)`` as a map, upscaled 4x by ``output_upscaling``:
        ``(B, C / 8, 4h, 4w)``."""
        b, _, c = feats.shape
        return self.output_upscaling(feats.transpose(1, 2).reshape(b, c, *size))

    def mask_head(
        self,
        hs: torch.Tensor,
        feats: torch.Tensor,
        size: Tuple[int, int],
        image_context: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mask logits and IoU predictions from the transformer's outputs: the image
        features upscaled 4x, each mask token's classifier applied to them.

        Args:
            hs (Tensor): Tokens ``(N, T', C)``.
            feats (Tensor): Image features ``(N, h * w, C)`` (speed path: or
                ``(1, h * w, C)``, shared).
            size (tuple[int, int]): ``(h, w)``.
            image_context (Tensor, optional): The second output of :meth:`image_inputs`
                (unused by SAM).

        Returns:
            tuple[Tensor, Tensor]: logits ``(N, T, 4h, 4w)`` and IoU predictions
            ``(N, T)``.
        """
        hyper_in = self.hypernetwork_weights(hs)
        if self.fast_path and fast_path.can_upscale_as_matmul(self.output_upscaling):
            masks = fast_path.upscale_as_matmul(self.output_upscaling, feats, size, hyper_in)
        else:
            upscaled = self.upscale(feats, size)
            b, c, h, w = upscaled.shape
            masks = (hyper_in @ upscaled.view(b, c, h * w)).view(len(hs), -1, h, w)
        return masks, self.iou_prediction_head(hs[:, 0, :])

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        prompts_per_chunk: Optional[int] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict all ``num_mask_tokens`` masks for every prompt.

        The reference path (``fast_path=False``) is the official one: the image is
        repeated per prompt and goes through the transformer and the upscaling with
        it. The speed path (:mod:`.mask_decoder_fast_path`) gives the same results.

        Args:
            image_embeddings (Tensor): ``(1, C, h, w)`` shared by all prompts, or
                ``(N, C, h, w)``, one per prompt.
            image_pe (Tensor): ``(1, C, h, w)``.
            sparse_prompt_embeddings (Tensor): ``(N, K, C)``.
            dense_prompt_embeddings (Tensor): ``(N, C, h, w)`` (may be an expanded view)
                or ``(1, C, h, w)``.
            prompts_per_chunk (int, optional): Speed path only: at most this many
                prompts through the transformer at a time (fewer when their features
                exceed about ``2 ** 22`` values). Results do not depend on it.

        Returns:
            tuple[Tensor, Tensor]: logits ``(N, T, 4h, 4w)`` and IoU predictions
            ``(N, T)``, ``T = num_mask_tokens``.
        """
        embedding, image_context = self.image_inputs(image_embeddings)
        n = sparse_prompt_embeddings.shape[0]
        self.check_batch(
            n, image_embeddings=embedding, dense_prompt_embeddings=dense_prompt_embeddings
        )
        output_tokens = self.output_token_weights().to(sparse_prompt_embeddings.dtype)
        output_tokens = output_tokens.unsqueeze(0).expand(n, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)
        if self.fast_path:
            return fast_path.predict_masks(
                self,
                tokens,
                embedding,
                image_pe,
                dense_prompt_embeddings,
                prompts_per_chunk,
                image_context,
            )
        # the image repeated per prompt, as the official decoder does
        src = embedding.expand(n, -1, -1, -1) + dense_prompt_embeddings
        pos_src = image_pe.expand(n, -1, -1, -1)
        hs, feats = self.transformer(src, pos_src, tokens)
        return self.mask_head(hs, feats, src.shape[-2:], image_context)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool = True,
        prompts_per_chunk: Optional[int] = None,
        **output_options,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict masks, keeping the multimask outputs or the single-mask output.

        Args: see :meth:`predict_masks`; ``multimask_output`` and ``output_options``
        (SAM-HQ: ``hq_token_only``) go to :meth:`select_outputs`.

        Returns:
            tuple[Tensor, Tensor]: logits ``(N, C, 4h, 4w)`` and IoU predictions
            ``(N, C)``, ``C = num_outputs(multimask_output)``.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            prompts_per_chunk,
        )
        return self.select_outputs(masks, iou_pred, multimask_output, **output_options)

    def select_outputs(
        self, masks: torch.Tensor, iou_pred: torch.Tensor, multimask_output: bool
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`forward` returns of :meth:`predict_masks`' logits ``(N, T, h, w)``
        and IoU predictions ``(N, T)``: tokens 1.. (``multimask_output``) or token 0."""
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, keep], iou_pred[:, keep]
