"""SAM's mask decoder: prompt tokens + image embedding to mask logits and IoU scores."""

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS

from ..layers import LayerNorm2d, TwoWayTransformer


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
        prompts_per_chunk (int, optional): Prompts run through the transformer and the
            upscaling at a time, after the shared image-side work is done once; keeps
            the per-prompt features small enough for the CPU caches. Results do not
            depend on it. None picks it from the feature size (about
            ``2 ** 22`` feature values a chunk: 4 prompts at 64x64x256). Defaults to None.
    """

    def __init__(
        self,
        transformer_dims: int = 256,
        transformer: Optional[dict] = None,
        num_multimask_outputs: int = 3,
        act_layer: type = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dims: int = 256,
        prompts_per_chunk: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.prompts_per_chunk = prompts_per_chunk
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
            LayerNorm2d(transformer_dims // 4),
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

    @staticmethod
    def _shared(x: torch.Tensor) -> torch.Tensor:
        """``x[:1]`` when every batch item of ``x`` is the same memory (a stride-0 batch)."""
        if x.shape[0] > 1 and x.stride(0) == 0:
            return x[:1]
        return x

    def _upscale_weights(self):
        """The two transposed convolutions as ``(in, 4 * out)`` matrices, ``(i, j, out)`` order."""
        up1, norm, _, up2, _ = self.output_upscaling
        mats = []
        for conv in (up1, up2):
            weight = conv.weight  # (in, out, 2, 2)
            mat = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
            bias = conv.bias.repeat(4) if conv.bias is not None else None
            mats.append((mat, bias))
        return mats, norm

    def _can_upscale_as_matmul(self) -> bool:
        up1, norm, _, up2, _ = self.output_upscaling
        return (
            all(
                type(conv) is nn.ConvTranspose2d
                and conv.kernel_size == (2, 2)
                and conv.stride == (2, 2)
                and conv.padding == (0, 0)
                and conv.output_padding == (0, 0)
                and conv.groups == 1
                and conv.dilation == (1, 1)
                for conv in (up1, up2)
            )
            and type(norm) is LayerNorm2d
        )

    def upscale_masks(
        self, src: torch.Tensor, size: Tuple[int, int], hyper_in: torch.Tensor
    ) -> torch.Tensor:
        """Upscale image features 4x and apply each mask token's linear classifier.

        The two stride-2 transposed convolutions are run as matrix products on
        channels-last features (their output pixels never overlap), followed by the
        channel LayerNorm and the activations; the pixel order is restored only on
        the ``T`` output channels.

        Args:
            src (Tensor): Image features ``(B, h * w, C)``, ``B`` is 1 or ``N``.
            size (tuple[int, int]): ``(h, w)``.
            hyper_in (Tensor): Per-token classifiers ``(N, T, C / 8)``.

        Returns:
            Tensor: Mask logits ``(N, T, 4h, 4w)``.
        """
        h, w = size
        n, t, _ = hyper_in.shape
        if not self._can_upscale_as_matmul():
            feats = src.transpose(1, 2).reshape(src.shape[0], -1, h, w)
            upscaled = self.output_upscaling(feats)  # (B, C / 8, 4h, 4w)
            b, c, uh, uw = upscaled.shape
            return (hyper_in @ upscaled.view(b, c, uh * uw)).view(n, t, uh, uw)
        ((mat1, bias1), (mat2, bias2)), norm = self._upscale_weights()
        act1, act2 = self.output_upscaling[2], self.output_upscaling[4]
        c1 = mat1.shape[1] // 4
        rows = src.reshape(-1, src.shape[-1])
        x = rows @ mat1 if bias1 is None else torch.addmm(bias1, rows, mat1)
        x = act1(F.layer_norm(x.view(-1, c1), (c1,), norm.weight, norm.bias, norm.eps))
        x = x @ mat2 if bias2 is None else torch.addmm(bias2, x, mat2)
        x = act2(x).view(src.shape[0], h * w * 16, -1)  # pixels (y, x, i, j, k, l)
        logits = x @ hyper_in.transpose(1, 2)  # (N, h * w * 16, T)
        # (N, y, x, i, j, k, l, T) -> (N, T, y, i, k, x, j, l): pixel (4y+2i+k, 4x+2j+l)
        logits = logits.view(n, h, w, 2, 2, 2, 2, t).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(n, t, 4 * h, 4 * w)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict all ``num_mask_tokens`` masks for every prompt.

        The image is not repeated per prompt: when the image embedding and the
        dense prompt embedding are shared (batch 1, or an expanded view such as the
        "no mask" embedding), the image-side work of the first transformer block is
        done once for all prompts. Prompts then go through the rest in chunks of
        ``prompts_per_chunk`` (which keeps the per-prompt features in cache). Results
        equal the official per-prompt repetition and do not depend on the chunking.

        Args:
            image_embeddings (Tensor): ``(1, C, h, w)`` shared by all prompts, or
                ``(N, C, h, w)``, one per prompt.
            image_pe (Tensor): ``(1, C, h, w)``.
            sparse_prompt_embeddings (Tensor): ``(N, K, C)``.
            dense_prompt_embeddings (Tensor): ``(N, C, h, w)`` (may be an expanded view)
                or ``(1, C, h, w)``.

        Returns:
            tuple[Tensor, Tensor]: logits ``(N, T, 4h, 4w)`` and IoU predictions
            ``(N, T)``, ``T = num_mask_tokens``.
        """
        n = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat(
            [
                output_tokens.to(sparse_prompt_embeddings.dtype).unsqueeze(0).expand(n, -1, -1),
                sparse_prompt_embeddings,
            ],
            dim=1,
        )
        image_embeddings = self._shared(image_embeddings)
        dense = self._shared(dense_prompt_embeddings)
        for name, x in (('image_embeddings', image_embeddings), ('dense_prompt_embeddings', dense)):
            if x.shape[0] not in (1, n):
                raise ValueError(
                    f'{name} must have batch 1 or {n} (one per prompt), got {x.shape[0]}'
                )
        src = image_embeddings + dense  # (1 or N, C, h, w)
        h, w = src.shape[-2:]
        image_pe = self._shared(image_pe)
        step = self.prompts_per_chunk or max(1, 2**22 // (h * w * src.shape[1]))
        cache = {} if src.shape[0] == 1 else None
        masks, ious = [], []
        for start in range(0, n, step):
            part = slice(start, min(start + step, n))
            hs, feats = self.transformer(
                src if cache is not None else src[part], image_pe, tokens[part], cache
            )
            mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
            hyper_in = torch.stack(
                [
                    mlp(mask_tokens_out[:, i])
                    for i, mlp in enumerate(self.output_hypernetworks_mlps)
                ],
                dim=1,
            )  # (chunk, T, C / 8)
            masks.append(self.upscale_masks(feats, (h, w), hyper_in))
            ious.append(self.iou_prediction_head(hs[:, 0, :]))
        if len(masks) == 1:
            return masks[0], ious[0]
        return torch.cat(masks), torch.cat(ious)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict masks, keeping the multimask outputs or the single-mask output.

        Args: see :meth:`predict_masks`; ``multimask_output`` selects tokens 1.. (3
        masks) or token 0 (1 mask).

        Returns:
            tuple[Tensor, Tensor]: logits ``(N, C, 4h, 4w)`` and IoU predictions
            ``(N, C)``, ``C = num_multimask_outputs`` or 1.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, keep], iou_pred[:, keep]
