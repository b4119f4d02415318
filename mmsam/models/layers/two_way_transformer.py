"""SAM's two-way transformer: prompt tokens and image tokens attend to each other.

The modules read as the official ``segment_anything/modeling/transformer.py`` (same
parameter names, same order of operations). The decoder's speed path
(:mod:`mmsam.models.heads.mask_decoder_fast_path`) runs the same modules with the image
side shared by all prompts and the few-token attentions folded.
"""

from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class TokenAttention(nn.Module):
    """Multi-head attention whose projections may shrink the channels.

    Args:
        embed_dims (int): Channels of queries, keys, values and output.
        num_heads (int): Attention heads; must divide ``embed_dims // downsample_rate``.
        downsample_rate (int): The internal width is ``embed_dims // downsample_rate``.
            Defaults to 1.
    """

    def __init__(self, embed_dims: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.internal_dims = embed_dims // downsample_rate
        self.num_heads = num_heads
        if self.internal_dims % num_heads != 0:
            raise ValueError(
                f'num_heads ({num_heads}) must divide the internal width ({self.internal_dims})'
            )
        self.q_proj = nn.Linear(embed_dims, self.internal_dims)
        self.k_proj = nn.Linear(embed_dims, self.internal_dims)
        self.v_proj = nn.Linear(embed_dims, self.internal_dims)
        self.out_proj = nn.Linear(self.internal_dims, embed_dims)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, internal)`` to ``(B, heads, N, internal / heads)``."""
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, heads, N, d)`` to ``(B, N, heads * d)``."""
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, self.internal_dims)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attend.

        Args:
            q (Tensor): ``(B, Nq, C)``.
            k (Tensor): ``(B, Nk, C)``.
            v (Tensor): ``(B, Nk, C)``.

        Returns:
            Tensor: ``(B, Nq, C)``.
        """
        q = self.split_heads(self.q_proj(q))
        k = self.split_heads(self.k_proj(k))
        v = self.split_heads(self.v_proj(v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.out_proj(self.merge_heads(out))


class MLPBlock(nn.Module):
    """``lin2(act(lin1(x)))``.

    Args:
        embed_dims (int): Input and output channels.
        mlp_dims (int): Hidden channels.
        act_layer (type): Activation class. Defaults to ``nn.ReLU``.
    """

    def __init__(self, embed_dims: int, mlp_dims: int, act_layer: type = nn.ReLU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embed_dims, mlp_dims)
        self.lin2 = nn.Linear(mlp_dims, embed_dims)
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to ``(..., embed_dims)``."""
        return self.lin2(self.act(self.lin1(x)))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image attention, token MLP, image-to-token attention.

    Args:
        embed_dims (int): Channels of tokens and image features.
        num_heads (int): Attention heads.
        mlp_dims (int): Hidden channels of the token MLP. Defaults to 2048.
        act_layer (type): MLP activation. Defaults to ``nn.ReLU``.
        attention_downsample_rate (int): Width reduction of the cross attentions.
            Defaults to 2.
        skip_first_layer_pe (bool): Whether the token self-attention ignores the
            token positional encoding (and its residual). Defaults to False.
        norm_eps (float): Epsilon of the LayerNorms (EfficientViT-SAM: 1e-6).
            Defaults to 1e-5 (SAM's).
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        mlp_dims: int = 2048,
        act_layer: type = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.self_attn = TokenAttention(embed_dims, num_heads)
        self.norm1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.cross_attn_token_to_image = TokenAttention(
            embed_dims, num_heads, attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.mlp = MLPBlock(embed_dims, mlp_dims, act_layer)
        self.norm3 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.norm4 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.cross_attn_image_to_token = TokenAttention(
            embed_dims, num_heads, attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def self_attend(self, queries: torch.Tensor, query_pe: torch.Tensor) -> torch.Tensor:
        """The token self-attention and ``norm1`` (the first step of :meth:`forward`)."""
        if self.skip_first_layer_pe:
            return self.norm1(self.self_attn(queries, queries, queries))
        q = queries + query_pe
        return self.norm1(queries + self.self_attn(q, q, queries))

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Update tokens and image features.

        Args:
            queries (Tensor): Tokens ``(B, Nq, C)``.
            keys (Tensor): Image features ``(B, HW, C)``.
            query_pe (Tensor): Token positional encoding ``(B, Nq, C)``.
            key_pe (Tensor): Image positional encoding ``(B, HW, C)``.

        Returns:
            tuple[Tensor, Tensor]: Updated ``queries`` ``(B, Nq, C)`` and ``keys``
            ``(B, HW, C)``.
        """
        queries = self.self_attend(queries, query_pe)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """A stack of :class:`TwoWayAttentionBlock` and a final token-to-image attention.

    Args:
        depth (int): Number of blocks. Defaults to 2.
        embed_dims (int): Channels. Defaults to 256.
        num_heads (int): Attention heads. Defaults to 8.
        mlp_dims (int): Hidden channels of the token MLPs. Defaults to 2048.
        act_layer (type): MLP activation. Defaults to ``nn.ReLU``.
        attention_downsample_rate (int): Width reduction of the cross attentions.
            Defaults to 2.
        norm_eps (float): Epsilon of the LayerNorms (EfficientViT-SAM: 1e-6).
            Defaults to 1e-5 (SAM's).
    """

    def __init__(
        self,
        depth: int = 2,
        embed_dims: int = 256,
        num_heads: int = 8,
        mlp_dims: int = 2048,
        act_layer: type = nn.ReLU,
        attention_downsample_rate: int = 2,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embed_dims = embed_dims
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embed_dims=embed_dims,
                num_heads=num_heads,
                mlp_dims=mlp_dims,
                act_layer=act_layer,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
                norm_eps=norm_eps,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = TokenAttention(
            embed_dims, num_heads, attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embed_dims, eps=norm_eps)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run the transformer.

        Args:
            image_embedding (Tensor): ``(B, C, h, w)``.
            image_pe (Tensor): ``(B, C, h, w)`` positional encoding of the image.
            point_embedding (Tensor): ``(B, T, C)`` prompt and output tokens.

        Returns:
            tuple[Tensor, Tensor]: Tokens ``(B, T, C)`` and image features
            ``(B, h * w, C)``.
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
