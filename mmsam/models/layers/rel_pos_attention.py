"""Multi-head self-attention with decomposed relative positions (MViTv2 style).

This is the attention of SAM's image encoder. The relative-position terms are
added to the attention logits as a bias, and the attention itself runs through
:func:`torch.nn.functional.scaled_dot_product_attention`, so no softmax matrix is
kept around beyond what the fused kernel needs.
"""

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resample a relative-position table to ``length`` entries.

    Args:
        rel_pos (Tensor): Table of shape ``(L, C)``.
        length (int): Number of relative distances wanted, ``2 * size - 1``.

    Returns:
        Tensor: Table of shape ``(length, C)``; ``rel_pos`` itself when
        ``L == length``.
    """
    if rel_pos.shape[0] == length:
        return rel_pos
    resized = F.interpolate(rel_pos.t().unsqueeze(0), size=length, mode='linear')
    return resized.squeeze(0).t()


def gather_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Look up the relative-position embedding of every (query, key) pair on one axis.

    When query and key lengths differ, the shorter axis is stretched so both
    span the same range (as in MViTv2 and the official SAM code).

    Args:
        q_size (int): Query length on this axis.
        k_size (int): Key length on this axis.
        rel_pos (Tensor): Table of shape ``(L, C)``; resampled to
            ``2 * max(q_size, k_size) - 1`` entries when needed.

    Returns:
        Tensor: Embeddings of shape ``(q_size, k_size, C)``.
    """
    table = resize_rel_pos(rel_pos, 2 * max(q_size, k_size) - 1)
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=table.device)[:, None] * q_scale
    k_coords = torch.arange(k_size, device=table.device)[None, :] * k_scale
    index = (q_coords - k_coords) + (k_size - 1) * k_scale
    return table[index.long()]


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: Tuple[int, int],
    k_size: Tuple[int, int],
) -> torch.Tensor:
    """Attention-logit bias from decomposed relative positions.

    ``bias[b, (qh, qw), (kh, kw)] = q[b, qh, qw] . Rh[qh, kh] + q[b, qh, qw] . Rw[qw, kw]``
    with ``q`` unscaled.

    Args:
        q (Tensor): Queries of shape ``(B, q_h * q_w, C)`` (``B`` counts heads).
        rel_pos_h (Tensor): Height table ``(Lh, C)``.
        rel_pos_w (Tensor): Width table ``(Lw, C)``.
        q_size (tuple[int, int]): ``(q_h, q_w)``.
        k_size (tuple[int, int]): ``(k_h, k_w)``.

    Returns:
        Tensor: Bias of shape ``(B, q_h * q_w, k_h * k_w)``.
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    table_h = gather_rel_pos(q_h, k_h, rel_pos_h)  # (q_h, k_h, C)
    table_w = gather_rel_pos(q_w, k_w, rel_pos_w)  # (q_w, k_w, C)
    b, _, c = q.shape
    q_grid = q.reshape(b, q_h, q_w, c)
    bias_h = torch.einsum('bhwc,hkc->bhwk', q_grid, table_h)  # (B, q_h, q_w, k_h)
    bias_w = torch.einsum('bhwc,wkc->bhwk', q_grid, table_w)  # (B, q_h, q_w, k_w)
    bias = bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]
    return bias.reshape(b, q_h * q_w, k_h * k_w)


class RelPosAttention(nn.Module):
    """Multi-head self-attention over a 2-D grid with decomposed relative positions.

    Args:
        embed_dims (int): Channels of the input and output.
        num_heads (int): Number of attention heads. Defaults to 8.
        qkv_bias (bool): Whether the qkv projection has a bias. Defaults to True.
        use_rel_pos (bool): Whether to add relative-position terms. Defaults to False.
        input_size (tuple[int, int], optional): Grid size the relative-position
            tables are made for; required with ``use_rel_pos``.
        heads_per_chunk (int, optional): When set, attention over grids larger
            than 32x32 (the global blocks) runs this many heads at a time, which
            bounds the memory of the bias to ``heads_per_chunk * (H * W) ** 2``
            values per image. Results do not change. Defaults to None (all heads).
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: Optional[Tuple[int, int]] = None,
        heads_per_chunk: Optional[int] = None,
    ) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(
                f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})'
            )
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = self.head_dims**-0.5
        self.heads_per_chunk = heads_per_chunk

        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)

        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError('input_size is required when use_rel_pos=True')
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, self.head_dims))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, self.head_dims))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: Tuple[int, int]):
        """Attention of ``(B, n, N, d)`` queries/keys/values, ``n`` heads."""
        b, n, length, d = q.shape
        bias = None
        if self.use_rel_pos:
            bias = decomposed_rel_pos_bias(
                q.reshape(b * n, length, d), self.rel_pos_h, self.rel_pos_w, hw, hw
            ).view(b, n, length, length)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend within the grid.

        Args:
            x (Tensor): Tokens of shape ``(B, H, W, C)``.

        Returns:
            Tensor: Tokens of shape ``(B, H, W, C)``.
        """
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, H*W, d)
        chunk = self.heads_per_chunk
        if chunk is not None and chunk < self.num_heads and h * w > 1024:
            out = torch.cat(
                [
                    self._attend(
                        q[:, i : i + chunk], k[:, i : i + chunk], v[:, i : i + chunk], (h, w)
                    )
                    for i in range(0, self.num_heads, chunk)
                ],
                dim=1,
            )
        else:
            out = self._attend(q, k, v, (h, w))
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return self.proj(out)
