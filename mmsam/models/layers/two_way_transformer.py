"""SAM's two-way transformer: prompt tokens and image tokens attend to each other."""

from typing import Dict, Optional, Tuple

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

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, self.internal_dims)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cache: Optional[Dict[str, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """Attend; a batch of 1 on either side is shared by the other side's batch.

        A shared side is projected once (not once per batch item): with one image
        and ``N`` prompts, the image keys/values (token-to-image) or the image
        queries (image-to-token) are projected once. The arithmetic of every output
        is the same as with the shared side repeated ``N`` times.

        Args:
            q (Tensor): ``(Bq, Nq, C)``.
            k (Tensor): ``(Bk, Nk, C)``.
            v (Tensor): ``(Bk, Nk, C)``.
            cache (dict, optional): ``{'shared': 'kv'}`` or ``{'shared': 'q'}``: the
                projections of that side (batch 1) are kept in it and reused by later
                calls with the same dict. Pass one only when that side is the same in
                every such call.

        Returns:
            Tensor: ``(max(Bq, Bk), Nq, C)``.
        """
        bq, nq, _ = q.shape
        bk = k.shape[0]
        if v.shape[0] != bk:
            raise ValueError(f'keys and values must share a batch, got {bk} and {v.shape[0]}')
        if bq != bk and 1 not in (bq, bk):
            raise ValueError(f'query batch {bq} and key batch {bk} do not broadcast')
        if bk == 1 and bq > 1:
            # shared keys: all queries of all batch items in one attention
            out = self.forward(q.reshape(1, bq * nq, -1), k, v, cache)
            return out.view(bq, nq, -1)
        shared = cache.get('shared') if cache is not None else None
        if shared not in (None, 'kv', 'q'):
            raise ValueError(f"cache['shared'] must be 'kv' or 'q', got {shared!r}")
        if shared == 'kv' and 'k' in cache:
            k, v = cache['k'], cache['v']
        else:
            k = self._split_heads(self.k_proj(k))
            v = self._split_heads(self.v_proj(v))
            if shared == 'kv':
                cache.update(k=k, v=v)
        if shared == 'q' and 'q' in cache:
            q = cache['q']
        else:
            q = self._split_heads(self.q_proj(q))
            if shared == 'q':
                cache['q'] = q
        if q.shape[0] == 1 and k.shape[0] > 1:
            q = q.expand(k.shape[0], -1, -1, -1)  # projected once, viewed per batch item
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, Nq, C / heads)
        return self.out_proj(self._merge_heads(out))

    def folds_well(self, num_tokens: int) -> bool:
        """Whether :meth:`forward_few_keys`/:meth:`forward_few_queries` pay off for
        ``num_tokens`` tokens on the short side (``heads * tokens <= internal width``)."""
        return self.num_heads * num_tokens <= self.internal_dims

    def _per_head(self, linear: nn.Linear) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``linear``'s weight as ``(heads, d, C)`` and bias as ``(heads, d)``."""
        d = self.internal_dims // self.num_heads
        weight = linear.weight.view(self.num_heads, d, -1)
        bias = None if linear.bias is None else linear.bias.view(self.num_heads, d)
        return weight, bias

    def forward_few_keys(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        residual: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Many queries attending a few keys (image-to-token), projections folded.

        With ``Nk`` keys per item, ``q_proj`` is folded into the projected keys and
        ``out_proj`` into the projected values, so the queries go through two small
        matrix products, ``(C, heads * Nk)`` and ``(heads * Nk, C)``, instead of
        ``q_proj``, attention and ``out_proj``. Equal to :meth:`forward` up to
        float rounding (summation order).

        Args:
            q (Tensor): ``(Bq, Nq, C)``, ``Bq`` is 1 (shared by all items) or ``B``.
            k (Tensor): ``(B, Nk, C)``.
            v (Tensor): ``(B, Nk, C)``.
            residual (Tensor, optional): ``(B, Nq, C)`` added to the output (in the
                same matrix product).

        Returns:
            Tensor: ``(B, Nq, C)``.
        """
        b, nk, c = k.shape
        heads = self.num_heads
        d = self.internal_dims // heads
        kp = self._split_heads(self.k_proj(k)) * d**-0.5  # (B, heads, Nk, d), scaled
        vp = self._split_heads(self.v_proj(v))  # (B, heads, Nk, d)
        wq, bq = self._per_head(self.q_proj)
        fold_q = torch.einsum('hdc,bhjd->bchj', wq, kp).reshape(b, c, heads * nk)
        wo = self.out_proj.weight.view(-1, heads, d)  # (C, heads, d)
        fold_o = torch.einsum('bhjd,chd->bhjc', vp, wo).reshape(b, heads * nk, -1)
        if self.out_proj.bias is not None:
            # each head's weights sum to 1, so the bias spreads evenly over the heads
            fold_o = fold_o + self.out_proj.bias / heads
        n = q.shape[1]
        # logits are laid out (B, heads * Nk, Nq): the softmax then runs along Nq
        if q.shape[0] == 1 and b > 1:
            fold_q = fold_q.transpose(1, 2).reshape(b * heads * nk, c)
            logits = (fold_q @ q[0].t()).view(b, heads * nk, n)
        else:
            logits = fold_q.transpose(1, 2) @ q.transpose(1, 2)  # (B, heads * Nk, Nq)
        if bq is not None:
            logits = logits + torch.einsum('hd,bhjd->bhj', bq, kp).reshape(b, heads * nk, 1)
        attn = logits.view(b, heads, nk, n).softmax(dim=2).view(b, heads * nk, n)
        if residual is None:
            return attn.transpose(1, 2) @ fold_o
        return torch.baddbmm(residual, attn.transpose(1, 2), fold_o)

    def forward_few_queries(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        """A few queries attending many keys (token-to-image), projections folded.

        ``k_proj`` is folded into the projected queries and ``v_proj`` applied after
        the attention-weighted sum of ``v``, so the keys and values go through two
        ``heads * Nq``-wide products instead of ``k_proj`` and ``v_proj``. Equal to
        :meth:`forward` up to float rounding.

        Args:
            q (Tensor): ``(B, Nq, C)``.
            k (Tensor): ``(Bk, Nk, C)``, ``Bk`` is 1 (shared) or ``B``.
            v (Tensor): ``(Bk, Nk, C)``.

        Returns:
            Tensor: ``(B, Nq, C)``.
        """
        b, nq, c = q.shape
        heads = self.num_heads
        d = self.internal_dims // heads
        qp = self._split_heads(self.q_proj(q)) * d**-0.5  # (B, heads, Nq, d), scaled
        wk, bk = self._per_head(self.k_proj)
        fold_k = torch.einsum('bhid,hdc->bhic', qp, wk).reshape(b, heads * nq, c)
        if k.shape[0] == 1 and b > 1:
            logits = (fold_k.reshape(b * heads * nq, c) @ k[0].t()).view(b, heads * nq, -1)
        else:
            logits = fold_k @ k.transpose(1, 2)  # (B, heads * Nq, Nk)
        if bk is not None:
            logits = logits + torch.einsum('bhid,hd->bhi', qp, bk).reshape(b, heads * nq, 1)
        attn = logits.softmax(dim=-1)
        if v.shape[0] == 1 and b > 1:
            mixed = (attn.view(b * heads * nq, -1) @ v[0]).view(b, heads, nq, c)
        else:
            mixed = (attn @ v).view(b, heads, nq, c)
        wv, bv = self._per_head(self.v_proj)
        out = torch.einsum('bhic,hdc->bhid', mixed, wv)  # (B, heads, Nq, d)
        if bv is not None:
            out = out + bv[:, None, :]
        return self.out_proj(self._merge_heads(out))


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
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        mlp_dims: int = 2048,
        act_layer: type = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = TokenAttention(embed_dims, num_heads)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.cross_attn_token_to_image = TokenAttention(
            embed_dims, num_heads, attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embed_dims)
        self.mlp = MLPBlock(embed_dims, mlp_dims, act_layer)
        self.norm3 = nn.LayerNorm(embed_dims)
        self.norm4 = nn.LayerNorm(embed_dims)
        self.cross_attn_image_to_token = TokenAttention(
            embed_dims, num_heads, attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        cache: Optional[Dict[str, dict]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Update tokens and image features.

        Args:
            queries (Tensor): Tokens ``(B, Nq, C)``.
            keys (Tensor): Image features ``(B, HW, C)``, or ``(1, HW, C)`` shared by
                all ``B`` token sets (then projected once).
            query_pe (Tensor): Token positional encoding ``(B, Nq, C)``.
            key_pe (Tensor): Image positional encoding ``(B, HW, C)`` or ``(1, HW, C)``.
            cache (dict, optional): Keeps the work on shared (batch 1) ``keys`` for
                later calls with the same ``keys`` and ``key_pe`` (other token sets).

        Returns:
            tuple[Tensor, Tensor]: Updated ``queries`` ``(B, Nq, C)`` and ``keys``
            ``(B, HW, C)``.
        """
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        if cache is not None and keys.shape[0] == 1:
            if 'k' not in cache:
                cache.update(k=keys + key_pe, token_to_image=dict(shared='kv'))
            k, t2i = cache['k'], cache['token_to_image']
        else:
            k, t2i = keys + key_pe, None
        q = queries + query_pe
        attn = self.cross_attn_token_to_image
        if t2i is None and attn.folds_well(q.shape[1]):
            queries = self.norm2(queries + attn.forward_few_queries(q, k, keys))
        else:
            queries = self.norm2(queries + attn(q, k, keys, t2i))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        attn = self.cross_attn_image_to_token
        if attn.folds_well(q.shape[1]):
            keys = self.norm4(attn.forward_few_keys(k, q, queries, residual=keys))
        else:
            keys = self.norm4(keys + attn(k, q, queries))
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
    """

    def __init__(
        self,
        depth: int = 2,
        embed_dims: int = 256,
        num_heads: int = 8,
        mlp_dims: int = 2048,
        act_layer: type = nn.ReLU,
        attention_downsample_rate: int = 2,
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
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = TokenAttention(
            embed_dims, num_heads, attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embed_dims)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        cache: Optional[dict] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run the transformer.

        One image may serve many prompts: with ``image_embedding`` of batch 1 and
        ``point_embedding`` of batch ``N``, the image-side work that is the same for
        every prompt (its keys, values and queries in the first block) is done once.
        The results equal those of repeating the image ``N`` times.

        Args:
            image_embedding (Tensor): ``(B, C, h, w)``, ``B`` is 1 or ``N``.
            image_pe (Tensor): ``(1, C, h, w)`` or ``(B, C, h, w)`` positional encoding
                of the image.
            point_embedding (Tensor): ``(N, T, C)`` prompt and output tokens.
            cache (dict, optional): With a batch-1 image, keeps the image-side work of
                the first block, so that later calls with the same image and other
                prompts (e.g. the next chunk of prompts) reuse it. Start with ``{}``.

        Returns:
            tuple[Tensor, Tensor]: Tokens ``(N, T, C)`` and image features
            ``(N, h * w, C)`` (``(1, h * w, C)`` when ``depth`` is 0 and ``B`` is 1).
        """
        shared = cache is not None and image_embedding.shape[0] == 1
        if shared and 'keys' in cache:
            keys, key_pe = cache['keys'], cache['key_pe']
        else:
            keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
            key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
            if shared:
                cache.update(keys=keys, key_pe=key_pe, first_layer={})
        queries = point_embedding
        for i, layer in enumerate(self.layers):
            layer_cache = cache['first_layer'] if shared and i == 0 else None
            queries, keys = layer(queries, keys, point_embedding, key_pe, layer_cache)
        q = queries + point_embedding
        k = keys + key_pe
        attn = self.final_attn_token_to_image
        if attn.folds_well(q.shape[1]):
            queries = self.norm_final_attn(queries + attn.forward_few_queries(q, k, keys))
        else:
            queries = self.norm_final_attn(queries + attn(q, k, keys))
        return queries, keys
