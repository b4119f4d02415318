"""The image encoder's speed path: attention with decomposed relative positions.

mmpretrain's ``ViTSAM`` attention (the official one) builds the full attention matrix
and adds the relative-position terms to it. Here the relative-position terms are
added to the attention logits as a bias and the attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention`, the bias built in chunks of
at most ``max_bias_elements`` values, so no softmax matrix is kept around beyond what
the fused kernel needs. The functions use the parameters of mmpretrain's ``Attention``
(``qkv``, ``proj``, ``rel_pos_h``, ``rel_pos_w``): no module of their own.
"""

from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.backbones.vit_sam import get_rel_pos, window_partition, window_unpartition


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
    table_h = get_rel_pos(q_h, k_h, rel_pos_h).to(q.dtype)  # (q_h, k_h, C)
    table_w = get_rel_pos(q_w, k_w, rel_pos_w).to(q.dtype)  # (q_w, k_w, C)
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


#: default bias budget: 128 MB in fp32
MAX_BIAS_ELEMENTS = 2**25


def _chunks(b: int, n: int, length: int, budget: int) -> List[Tuple[slice, slice]]:
    """(batch, query) slices whose bias holds at most ``budget`` values."""
    per_item = n * length * length
    if b * per_item <= budget:
        return [(slice(0, b), slice(0, length))]
    if per_item <= budget:
        step = budget // per_item
        return [(slice(i, i + step), slice(0, length)) for i in range(0, b, step)]
    step = max(1, budget // (n * length))
    step = -(-length // -(-length // step))  # equal chunks, no tiny remainder
    return [(slice(i, i + 1), slice(j, j + step)) for i in range(b) for j in range(0, length, step)]


def _attend_heads(
    attn: nn.Module,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    hw: Tuple[int, int],
    max_bias_elements: int,
) -> torch.Tensor:
    """Attention of ``(B, n, N, d)`` queries/keys/values (``n`` heads); same shape out."""
    if not attn.use_rel_pos:
        return F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    b, n, length, d = q.shape
    rel_h, rel_w = rel_pos_terms(q, attn.rel_pos_h, attn.rel_pos_w, hw, hw)
    chunks = _chunks(b, n, length, max_bias_elements)
    if len(chunks) == 1:
        bias = expand_rel_pos_bias(rel_h, rel_w)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
    out = q.new_empty(q.shape)
    first_b, first_q = chunks[0]
    buffer = q.new_empty(len(range(b)[first_b]) * n * len(range(length)[first_q]) * length)
    for rows, queries in chunks:
        bias_h, bias_w = rel_h[rows, :, queries], rel_w[rows, :, queries]
        size = bias_h.numel() * bias_w.shape[-1]
        bias = expand_rel_pos_bias(bias_h, bias_w, out=buffer[:size])
        out[rows, :, queries] = F.scaled_dot_product_attention(
            q[rows, :, queries], k[rows], v[rows], attn_mask=bias, scale=attn.scale
        )
    return out


def rel_pos_attend(
    attn: nn.Module, x: torch.Tensor, max_bias_elements: int = MAX_BIAS_ELEMENTS
) -> torch.Tensor:
    """mmpretrain's ``Attention.forward`` before its output projection, fused.

    Args:
        attn (nn.Module): mmpretrain's ``vit_sam.Attention`` (``qkv``, ``proj``,
            ``num_heads``, ``scale``, ``use_rel_pos``, ``rel_pos_h``, ``rel_pos_w``).
        x (Tensor): Tokens ``(B, H, W, C)``.
        max_bias_elements (int): Largest relative-position bias chunk, in elements.
            Results do not depend on it.

    Returns:
        Tensor: Attended values ``(B, H, W, C)`` (heads concatenated);
        ``attn(x) == attn.proj(rel_pos_attend(attn, x))`` up to float rounding. The
        projection is per token, so a caller may crop padding before applying it.
    """
    if max_bias_elements < 1:
        raise ValueError(f'max_bias_elements must be positive, got {max_bias_elements}')
    b, h, w, _ = x.shape
    qkv = attn.qkv(x).reshape(b, h * w, 3, attn.num_heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, H*W, d)
    out = _attend_heads(attn, q, k, v, (h, w), int(max_bias_elements))
    return out.transpose(1, 2).reshape(b, h, w, -1)


def encoder_layer_forward(
    layer: nn.Module, x: torch.Tensor, max_bias_elements: int = MAX_BIAS_ELEMENTS
) -> torch.Tensor:
    """mmpretrain's ``vit_sam.TransformerEncoderLayer.forward`` with :func:`rel_pos_attend`.

    Windowed layers apply the output projection after the windows are merged and
    their padding dropped (it is per token).

    Args:
        layer (nn.Module): The layer whose modules are used.
        x (Tensor): Tokens ``(B, H, W, C)``.
        max_bias_elements (int): See :func:`rel_pos_attend`.

    Returns:
        Tensor: ``(B, H, W, C)``.
    """
    shortcut = x
    x = layer.ln1(x)
    if layer.window_size > 0:
        hw = (x.shape[1], x.shape[2])
        x, padded_hw = window_partition(x, layer.window_size)
        x = rel_pos_attend(layer.attn, x, max_bias_elements)
        x = window_unpartition(x, layer.window_size, padded_hw, hw)
    else:
        x = rel_pos_attend(layer.attn, x, max_bias_elements)
    x = shortcut + layer.attn.proj(x)
    return layer.ffn(layer.ln2(x), identity=x)
