"""The mask decoder's speed path: the same modules, the same results, less work per prompt.

:class:`~mmsam.models.heads.SAMMaskDecoder` runs these functions instead of its
reference-shaped ``forward`` when ``fast_path`` is True (the default). They use the
decoder's own parameters (no module of their own, so state-dict keys do not change) and
equal the reference up to float rounding (``tests/models/test_sam_speed_paths.py``):

* **shared image**: with one image and ``N`` prompts the image is not repeated ``N``
  times; the image-side work of the first block (``keys + key_pe`` and the
  token-to-image keys/values) is done once and kept in a cache for the next chunk of
  prompts, and the first image-to-token attention projects the image queries once;
* **folded few-token attention**: when one side has few tokens
  (``heads * tokens <= width``), the projections of the many-token side are folded
  into the few-token side (:func:`attend_few_keys`, :func:`attend_few_queries`);
* **prompt chunks**: prompts go through the transformer and the upscaling a chunk at a
  time (about ``2 ** 22`` feature values, which stay in the CPU caches);
* **matrix-product upscaling**: the two stride-2 transposed convolutions, whose
  output pixels never overlap, run as matrix products on channels-last features and
  the pixel order is restored only on the ``T`` mask channels (:func:`upscale_as_matmul`).
"""

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import LayerNorm2d

from ..layers.two_way_transformer import TokenAttention, TwoWayAttentionBlock, TwoWayTransformer

#: feature values per prompt chunk when no smaller chunk is asked for (4 prompts at 64x64x256)
CHUNK_FEATURE_VALUES = 2**22


def folds_well(attn: TokenAttention, num_tokens: int) -> bool:
    """Whether folding pays off for ``num_tokens`` tokens on the short side
    (``heads * tokens <= internal width``)."""
    return attn.num_heads * num_tokens <= attn.internal_dims


def _per_head(
    attn: TokenAttention, linear: nn.Linear
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``linear``'s weight as ``(heads, d, C)`` and bias as ``(heads, d)``."""
    d = attn.internal_dims // attn.num_heads
    weight = linear.weight.view(attn.num_heads, d, -1)
    bias = None if linear.bias is None else linear.bias.view(attn.num_heads, d)
    return weight, bias


def _expand(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.expand(n, -1, -1) if x.shape[0] == 1 and n > 1 else x


def attend_shared_keys(
    attn: TokenAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: dict
) -> torch.Tensor:
    """``attn(q, k, v)`` for ``B`` query sets and one key/value set shared by all of them.

    All queries go through one attention; the projected keys and values are kept in
    ``cache`` and reused by later calls with the same dict (the same ``k`` and ``v``).

    Args:
        attn (TokenAttention): The module whose parameters are used.
        q (Tensor): ``(B, Nq, C)``.
        k (Tensor): ``(1, Nk, C)``.
        v (Tensor): ``(1, Nk, C)``.
        cache (dict): Start with ``{}``.

    Returns:
        Tensor: ``(B, Nq, C)``.
    """
    b, nq, _ = q.shape
    if 'k' not in cache:
        cache.update(k=attn.split_heads(attn.k_proj(k)), v=attn.split_heads(attn.v_proj(v)))
    q = attn.split_heads(attn.q_proj(q.reshape(1, b * nq, -1)))
    out = F.scaled_dot_product_attention(q, cache['k'], cache['v'])
    return attn.out_proj(attn.merge_heads(out)).view(b, nq, -1)


def attend_few_keys(
    attn: TokenAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    residual: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Many queries attending a few keys (image-to-token), projections folded.

    With ``Nk`` keys per item, ``q_proj`` is folded into the projected keys and
    ``out_proj`` into the projected values, so the queries go through two small
    matrix products, ``(C, heads * Nk)`` and ``(heads * Nk, C)``, instead of
    ``q_proj``, attention and ``out_proj``.

    Args:
        attn (TokenAttention): The module whose parameters are used.
        q (Tensor): ``(Bq, Nq, C)``, ``Bq`` is 1 (shared by all items) or ``B``.
        k (Tensor): ``(B, Nk, C)``.
        v (Tensor): ``(B, Nk, C)``.
        residual (Tensor, optional): ``(B or 1, Nq, C)`` added to the output (in the
            same matrix product).

    Returns:
        Tensor: ``(B, Nq, C)``, ``residual + attn(q, k, v)``.
    """
    b, nk, c = k.shape
    heads = attn.num_heads
    d = attn.internal_dims // heads
    kp = attn.split_heads(attn.k_proj(k)) * d**-0.5  # (B, heads, Nk, d), scaled
    vp = attn.split_heads(attn.v_proj(v))  # (B, heads, Nk, d)
    wq, bq = _per_head(attn, attn.q_proj)
    fold_q = torch.einsum('hdc,bhjd->bchj', wq, kp).reshape(b, c, heads * nk)
    wo = attn.out_proj.weight.view(-1, heads, d)  # (C, heads, d)
    fold_o = torch.einsum('bhjd,chd->bhjc', vp, wo).reshape(b, heads * nk, -1)
    if attn.out_proj.bias is not None:
        # each head's weights sum to 1, so the bias spreads evenly over the heads
        fold_o = fold_o + attn.out_proj.bias / heads
    n = q.shape[1]
    # logits are laid out (B, heads * Nk, Nq): the softmax then runs along Nq
    if q.shape[0] == 1 and b > 1:
        fold_q = fold_q.transpose(1, 2).reshape(b * heads * nk, c)
        logits = (fold_q @ q[0].t()).view(b, heads * nk, n)
    else:
        logits = fold_q.transpose(1, 2) @ q.transpose(1, 2)  # (B, heads * Nk, Nq)
    if bq is not None:
        logits = logits + torch.einsum('hd,bhjd->bhj', bq, kp).reshape(b, heads * nk, 1)
    weights = logits.view(b, heads, nk, n).softmax(dim=2).view(b, heads * nk, n)
    if residual is None:
        return weights.transpose(1, 2) @ fold_o
    return torch.baddbmm(residual, weights.transpose(1, 2), fold_o)


def attend_few_queries(
    attn: TokenAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """A few queries attending many keys (token-to-image), projections folded.

    ``k_proj`` is folded into the projected queries and ``v_proj`` applied after the
    attention-weighted sum of ``v``, so the keys and values go through two
    ``heads * Nq``-wide products instead of ``k_proj`` and ``v_proj``.

    Args:
        attn (TokenAttention): The module whose parameters are used.
        q (Tensor): ``(B, Nq, C)``.
        k (Tensor): ``(Bk, Nk, C)``, ``Bk`` is 1 (shared) or ``B``.
        v (Tensor): ``(Bk, Nk, C)``.

    Returns:
        Tensor: ``(B, Nq, C)``.
    """
    b, nq, c = q.shape
    heads = attn.num_heads
    d = attn.internal_dims // heads
    qp = attn.split_heads(attn.q_proj(q)) * d**-0.5  # (B, heads, Nq, d), scaled
    wk, bk = _per_head(attn, attn.k_proj)
    fold_k = torch.einsum('bhid,hdc->bhic', qp, wk).reshape(b, heads * nq, c)
    if k.shape[0] == 1 and b > 1:
        logits = (fold_k.reshape(b * heads * nq, c) @ k[0].t()).view(b, heads * nq, -1)
    else:
        logits = fold_k @ k.transpose(1, 2)  # (B, heads * Nq, Nk)
    if bk is not None:
        logits = logits + torch.einsum('bhid,hd->bhi', qp, bk).reshape(b, heads * nq, 1)
    weights = logits.softmax(dim=-1)
    if v.shape[0] == 1 and b > 1:
        mixed = (weights.view(b * heads * nq, -1) @ v[0]).view(b, heads, nq, c)
    else:
        mixed = (weights @ v).view(b, heads, nq, c)
    wv, bv = _per_head(attn, attn.v_proj)
    out = torch.einsum('bhic,hdc->bhid', mixed, wv)  # (B, heads, Nq, d)
    if bv is not None:
        out = out + bv[:, None, :]
    return attn.out_proj(attn.merge_heads(out))


def attend_tokens_to_image(
    attn: TokenAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """``attn(q, k, v)`` of ``B`` token sets on image keys of batch ``B`` or 1."""
    if folds_well(attn, q.shape[1]):
        return attend_few_queries(attn, q, k, v)
    return attn(q, _expand(k, q.shape[0]), _expand(v, q.shape[0]))


def block_forward(
    block: TwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_pe: torch.Tensor,
    key_pe: torch.Tensor,
    cache: Optional[Dict[str, object]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:meth:`TwoWayAttentionBlock.forward` on image features shared by the token sets.

    Args:
        block (TwoWayAttentionBlock): The block whose parameters are used.
        queries (Tensor): Tokens ``(B, Nq, C)``.
        keys (Tensor): Image features ``(B, HW, C)``, or ``(1, HW, C)`` shared by all
            ``B`` token sets.
        query_pe (Tensor): ``(B, Nq, C)``.
        key_pe (Tensor): ``(1, HW, C)`` or ``(B, HW, C)``.
        cache (dict, optional): With shared ``keys``: keeps the image-side work for
            later calls with the same ``keys`` and ``key_pe`` (other token sets).

    Returns:
        tuple[Tensor, Tensor]: ``queries (B, Nq, C)`` and ``keys (B, HW, C)``.
    """
    queries = block.self_attend(queries, query_pe)
    q = queries + query_pe
    if keys.shape[0] == 1 and cache is not None:
        if 'k' not in cache:
            cache.update(k=keys + key_pe, token_to_image={})
        k = cache['k']
        t2i = attend_shared_keys(
            block.cross_attn_token_to_image, q, k, keys, cache['token_to_image']
        )
    else:
        k = keys + key_pe
        t2i = attend_tokens_to_image(block.cross_attn_token_to_image, q, k, keys)
    queries = block.norm2(queries + t2i)

    queries = block.norm3(queries + block.mlp(queries))

    q = queries + query_pe
    attn = block.cross_attn_image_to_token
    if folds_well(attn, q.shape[1]):
        keys = block.norm4(attend_few_keys(attn, k, q, queries, residual=keys))
    else:
        n = q.shape[0]
        keys = block.norm4(keys + attn(_expand(k, n), q, queries))
    return queries, keys


def transformer_forward(
    transformer: TwoWayTransformer,
    image_embedding: torch.Tensor,
    image_pe: torch.Tensor,
    point_embedding: torch.Tensor,
    cache: Optional[dict] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:meth:`TwoWayTransformer.forward` with one image shared by ``N`` token sets.

    Args:
        transformer (TwoWayTransformer): The module whose parameters are used.
        image_embedding (Tensor): ``(B, C, h, w)``, ``B`` is 1 (shared) or ``N``.
        image_pe (Tensor): ``(1, C, h, w)`` or ``(B, C, h, w)``.
        point_embedding (Tensor): ``(N, T, C)``.
        cache (dict, optional): With a batch-1 image, keeps the image-side work of the
            first block, so that later calls with the same image and other prompts
            (the next chunk) reuse it. Start with ``{}``.

    Returns:
        tuple[Tensor, Tensor]: Tokens ``(N, T, C)`` and image features
        ``(N, h * w, C)`` (``(1, h * w, C)`` when ``depth`` is 0 and ``B`` is 1).
    """
    shared = image_embedding.shape[0] == 1
    cache = {} if shared and cache is None else cache
    if shared and 'keys' in cache:
        keys, key_pe = cache['keys'], cache['key_pe']
    else:
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        if shared:
            cache.update(keys=keys, key_pe=key_pe, first_layer={})
    queries = point_embedding
    for i, layer in enumerate(transformer.layers):
        layer_cache = cache['first_layer'] if shared and i == 0 else None
        queries, keys = block_forward(layer, queries, keys, point_embedding, key_pe, layer_cache)
    q = queries + point_embedding
    k = keys + key_pe
    attn_out = attend_tokens_to_image(transformer.final_attn_token_to_image, q, k, keys)
    return transformer.norm_final_attn(queries + attn_out), keys


def can_upscale_as_matmul(output_upscaling: nn.Sequential) -> bool:
    """Whether ``output_upscaling`` is SAM's (2x2 stride-2 transposed convolutions around a
    :class:`LayerNorm2d`), which :func:`upscale_as_matmul` computes."""
    up1, norm, _, up2, _ = output_upscaling
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


def _as_matrix(conv: nn.ConvTranspose2d) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A 2x2 stride-2 transposed convolution as an ``(in, 4 * out)`` matrix in
    ``(i, j, out)`` order (each input pixel makes one 2x2 output block) and its bias."""
    weight = conv.weight  # (in, out, 2, 2)
    mat = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return mat, None if conv.bias is None else conv.bias.repeat(4)


def upscale_as_matmul(
    output_upscaling: nn.Sequential,
    src: torch.Tensor,
    size: Tuple[int, int],
    hyper_in: torch.Tensor,
) -> torch.Tensor:
    """Upscale image features 4x and apply each mask token's linear classifier.

    Equal to ``hyper_in @ output_upscaling(src as a map)`` for SAM's upscaling
    (:func:`can_upscale_as_matmul`; another is refused: the decoder runs it as the
    reference does, :meth:`SAMMaskDecoder.mask_head`).

    Args:
        output_upscaling (nn.Sequential): The decoder's upscaling.
        src (Tensor): Image features ``(B, h * w, C)``, ``B`` is 1 or ``N``.
        size (tuple[int, int]): ``(h, w)``.
        hyper_in (Tensor): Per-token classifiers ``(N, T, C / 8)``.

    Returns:
        Tensor: Mask logits ``(N, T, 4h, 4w)``.
    """
    h, w = size
    n, t, _ = hyper_in.shape
    if not can_upscale_as_matmul(output_upscaling):
        raise ValueError(
            "upscale_as_matmul computes SAM's upscaling (2x2 stride-2 transposed "
            f'convolutions around a LayerNorm2d), not {output_upscaling}'
        )
    up1, norm, act1, up2, act2 = output_upscaling
    (mat1, bias1), (mat2, bias2) = _as_matrix(up1), _as_matrix(up2)
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


def _shared(x: torch.Tensor) -> torch.Tensor:
    """``x[:1]`` when every batch item of ``x`` is the same memory (a stride-0 batch)."""
    if x.shape[0] > 1 and x.stride(0) == 0:
        return x[:1]
    return x


def predict_masks(
    decoder: nn.Module,
    tokens: torch.Tensor,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
    prompts_per_chunk: Optional[int] = None,
    image_context: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:meth:`SAMMaskDecoder.predict_masks` without repeating the image per prompt.

    Arguments and results are those of the decoder's method, with ``decoder`` the module
    whose parameters are used and ``tokens`` ``(N, T + K, C)`` the output tokens followed
    by the sparse prompt embeddings. ``prompts_per_chunk``: at most this many prompts at
    a time, fewer when their features would exceed :data:`CHUNK_FEATURE_VALUES`.
    ``image_context``: what the decoder's ``mask_head`` takes besides the transformer's
    outputs, ``(1 or N, ...)`` (SAM-HQ's HQ features; None for SAM).
    """
    n = tokens.shape[0]
    src = _shared(image_embeddings) + _shared(dense_prompt_embeddings)  # (1 or N, C, h, w)
    h, w = src.shape[-2:]
    image_pe = _shared(image_pe)
    step = max(1, CHUNK_FEATURE_VALUES // (h * w * src.shape[1]))
    step = min(step, prompts_per_chunk or step)
    cache = {} if src.shape[0] == 1 else None
    masks, ious = [], []
    for start in range(0, n, step):
        part = slice(start, min(start + step, n))
        hs, feats = transformer_forward(
            decoder.transformer,
            src if cache is not None else src[part],
            image_pe,
            tokens[part],
            cache,
        )
        context = image_context
        if context is not None and context.shape[0] > 1:
            context = context[part]
        part_masks, part_ious = decoder.mask_head(hs, feats, (h, w), context)
        masks.append(part_masks)
        ious.append(part_ious)
    if len(masks) == 1:
        return masks[0], ious[0]
    return torch.cat(masks), torch.cat(ious)
