"""Multi-head self-attention with decomposed relative positions (MViTv2 style).

This is the attention of SAM's image encoder. The relative-position terms are
added to the attention logits as a bias, and the attention itself runs through
:func:`torch.nn.functional.scaled_dot_product_attention`, so no softmax matrix is
kept around beyond what the fused kernel needs.
"""

from typing import List, Optional, Tuple

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


def rel_pos_terms(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: Tuple[int, int],
    k_size: Tuple[int, int],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the decomposed relative-position bias.

    ``bias[b, (qh, qw), (kh, kw)] = rel_h[b, (qh, qw), kh] + rel_w[b, (qh, qw), kw]``.

    Args:
        q (Tensor): Queries of shape ``(..., q_h * q_w, C)`` (unscaled).
        rel_pos_h (Tensor): Height table ``(Lh, C)``.
        rel_pos_w (Tensor): Width table ``(Lw, C)``.
        q_size (tuple[int, int]): ``(q_h, q_w)``.
        k_size (tuple[int, int]): ``(k_h, k_w)``.

    Returns:
        tuple[Tensor, Tensor]: contiguous ``rel_h (..., q_h * q_w, k_h)`` and
        ``rel_w (..., q_h * q_w, k_w)``.
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    lead, c = q.shape[:-2], q.shape[-1]
    table_h = gather_rel_pos(q_h, k_h, rel_pos_h).to(q.dtype)  # (q_h, k_h, C)
    table_w = gather_rel_pos(q_w, k_w, rel_pos_w).to(q.dtype)  # (q_w, k_w, C)
    q_grid = q.reshape(-1, q_h, q_w, c)
    rel_h = torch.einsum('bhwc,hkc->bhwk', q_grid, table_h)  # (B, q_h, q_w, k_h)
    rel_w = torch.einsum('bhwc,wkc->bhwk', q_grid, table_w)  # (B, q_h, q_w, k_w)
    rel_h = rel_h.contiguous().view(*lead, q_h * q_w, k_h)
    rel_w = rel_w.contiguous().view(*lead, q_h * q_w, k_w)
    return rel_h, rel_w


def expand_rel_pos_bias(
    rel_h: torch.Tensor, rel_w: torch.Tensor, out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Sum the two factors of :func:`rel_pos_terms` into a contiguous bias.

    Args:
        rel_h (Tensor): ``(..., Nq, k_h)``.
        rel_w (Tensor): ``(..., Nq, k_w)``.
        out (Tensor, optional): A contiguous buffer of ``rel_h.numel() * k_w``
            elements to write into (reused across chunks).

    Returns:
        Tensor: ``(..., Nq, k_h * k_w)``, contiguous.
    """
    k_h, k_w = rel_h.shape[-1], rel_w.shape[-1]
    needs_grad = torch.is_grad_enabled() and (rel_h.requires_grad or rel_w.requires_grad)
    if needs_grad or torch.jit.is_tracing() or torch.compiler.is_compiling():
        # exporters and compilers take the plain sum (they cannot trace ``out=``), and so
        # does training (autograd does not differentiate through ``out=``)
        return (rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)).reshape(*rel_h.shape[:-1], k_h * k_w)
    shape = (*rel_h.shape, k_w)
    if out is None:
        out = rel_h.new_empty(shape)
    else:
        out = out.view(shape)
    # writing into a contiguous buffer avoids a strided result that would need a copy
    torch.add(rel_h.unsqueeze(-1), rel_w.unsqueeze(-2), out=out)
    return out.view(*rel_h.shape[:-1], k_h * k_w)


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
    rel_h, rel_w = rel_pos_terms(q, rel_pos_h, rel_pos_w, q_size, k_size)
    return expand_rel_pos_bias(rel_h, rel_w)


class RelPosAttention(nn.Module):
    """Multi-head self-attention over a 2-D grid with decomposed relative positions.

    The relative-position bias is built in chunks of at most ``max_bias_elements``
    values (over images/windows first, then over queries), each passed to
    :func:`torch.nn.functional.scaled_dot_product_attention` as its mask; results do
    not depend on the chunking.

    Args:
        embed_dims (int): Channels of the input and output.
        num_heads (int): Number of attention heads. Defaults to 8.
        qkv_bias (bool): Whether the qkv projection has a bias. Defaults to True.
        use_rel_pos (bool): Whether to add relative-position terms. Defaults to False.
        input_size (tuple[int, int], optional): Grid size the relative-position
            tables are made for; required with ``use_rel_pos``.
        heads_per_chunk (int, optional): When set, attention over grids larger
            than 32x32 (the global blocks) runs this many heads at a time.
            Results do not change. Defaults to None (all heads).
        max_bias_elements (int): Largest relative-position bias chunk, in elements.
            Defaults to ``2 ** 25`` (128 MB in fp32).
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: Optional[Tuple[int, int]] = None,
        heads_per_chunk: Optional[int] = None,
        max_bias_elements: int = 2**25,
    ) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(
                f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})'
            )
        if max_bias_elements < 1:
            raise ValueError(f'max_bias_elements must be positive, got {max_bias_elements}')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = self.head_dims**-0.5
        self.heads_per_chunk = heads_per_chunk
        self.max_bias_elements = int(max_bias_elements)

        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)

        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError('input_size is required when use_rel_pos=True')
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, self.head_dims))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, self.head_dims))

    def _chunks(self, b: int, n: int, length: int) -> List[Tuple[slice, slice]]:
        """(batch, query) slices whose bias holds at most ``max_bias_elements`` values."""
        per_item = n * length * length
        if b * per_item <= self.max_bias_elements:
            return [(slice(0, b), slice(0, length))]
        if per_item <= self.max_bias_elements:
            step = self.max_bias_elements // per_item
            return [(slice(i, i + step), slice(0, length)) for i in range(0, b, step)]
        step = max(1, self.max_bias_elements // (n * length))
        step = -(-length // -(-length // step))  # equal chunks, no tiny remainder
        return [
            (slice(i, i + 1), slice(j, j + step)) for i in range(b) for j in range(0, length, step)
        ]

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: Tuple[int, int]
    ) -> torch.Tensor:
        """Attention of ``(B, n, N, d)`` queries/keys/values (``n`` heads); same shape out."""
        if not self.use_rel_pos:
            return F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        b, n, length, d = q.shape
        rel_h, rel_w = rel_pos_terms(q, self.rel_pos_h, self.rel_pos_w, hw, hw)
        chunks = self._chunks(b, n, length)
        if len(chunks) == 1:
            bias = expand_rel_pos_bias(rel_h, rel_w)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = q.new_empty(q.shape)
        first_b, first_q = chunks[0]
        buffer = q.new_empty(len(range(b)[first_b]) * n * len(range(length)[first_q]) * length)
        for rows, queries in chunks:
            bias_h, bias_w = rel_h[rows, :, queries], rel_w[rows, :, queries]
            size = bias_h.numel() * bias_w.shape[-1]
            bias = expand_rel_pos_bias(bias_h, bias_w, out=buffer[:size])
            out[rows, :, queries] = F.scaled_dot_product_attention(
                q[rows, :, queries], k[rows], v[rows], attn_mask=bias, scale=self.scale
            )
        return out

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Attention before the output projection.

        Args:
            x (Tensor): Tokens of shape ``(B, H, W, C)``.

        Returns:
            Tensor: Attended values of shape ``(B, H, W, C)`` (heads concatenated);
            :meth:`forward` is ``proj(attend(x))``. The projection is per token, so a
            caller may crop padding before applying it.
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
        return out.transpose(1, 2).reshape(b, h, w, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend within the grid.

        Args:
            x (Tensor): Tokens of shape ``(B, H, W, C)``.

        Returns:
            Tensor: Tokens of shape ``(B, H, W, C)``.
        """
        return self.proj(self.attend(x))
