"""The fused inference path of :class:`SAMTinyViT` (eval mode only).

Same weights and same arithmetic as the modules' forward (``plain_forward``), in fewer
and cheaper kernels:

* every ``ConvBN2d`` runs as one convolution whose weight and bias have the batch norm
  folded in (eval-mode batch norm is an affine map per channel); the folding is redone
  at every call from the current parameters, so it never goes stale;
* the maps stay channels-last from the patch embedding to the neck: the tokens
  ``(B, H, W, C)`` of the attention stages *are* a channels-last ``(B, C, H, W)`` map,
  so the depthwise ``local_conv`` and the patch mergings need no transposes;
* window attention runs through ``F.scaled_dot_product_attention`` with the bias table
  as its additive mask, and the output projection after the windows are merged back
  (on the unpadded tokens only);
* the large early maps are computed in bands of rows (:func:`banded_rows`): an MBConv
  block's 4x-expanded hidden map at 1/4 of the input (256 channels at 256 x 256 for
  MobileSAM: 64 MiB), the first patch merging's hidden map and the first attention
  stage's MLP hidden tokens never exist whole. A tensor that large is a fresh ``mmap``
  for glibc's allocator at every call, and touching its pages for the first time cost
  about 15% of the encoder's CPU time (94k page faults per 1024-px image); bands of
  at most :data:`BAND_BYTES` are reused from the heap instead.

Padded window tokens are zeros before the attention's LayerNorm, as in the reference.
"""

from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.backbones.tinyvit import ConvBN2d

CHANNELS_LAST = torch.channels_last

#: Largest hidden map (bytes) the fused path builds in one piece; larger ones are built in
#: bands of rows. Below glibc's largest ``mmap`` threshold (32 MiB), so freed bands are
#: reused from the heap rather than mapped afresh, and small enough to stay near the
#: caches; big enough that the extra halo rows cost about 3%.
BAND_BYTES = 16 * 2**20

# oneDNN's convolution and linear layer with fused bias + unary / binary post-ops (what
# inductor emits on the CPU); None where this torch build lacks them
_ONEDNN_CONV = (
    getattr(torch.ops.mkldnn, '_convolution_pointwise', None)
    if torch.backends.mkldnn.is_available()
    else None
)
_ONEDNN_LINEAR = (
    getattr(torch.ops.mkldnn, '_linear_pointwise', None)
    if torch.backends.mkldnn.is_available()
    else None
)


def fold_conv_bn(module: ConvBN2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of one convolution equal to ``module`` in eval mode.

    Args:
        module (ConvBN2d): a bias-free ``conv2d`` followed by ``bn2d``.

    Returns:
        tuple[Tensor, Tensor]: weight ``(C_out, C_in / groups, k, k)`` and bias ``(C_out,)``.
    """
    conv, bn = module.conv2d, module.bn2d
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale[:, None, None, None]
    bias = bn.bias - bn.running_mean * scale
    return weight, bias


def _onednn_ops_apply(x: torch.Tensor) -> bool:
    """Whether oneDNN's fused convolution ops can run ``x``: float32 on the CPU, eager
    inference (no autocast, no gradients, not traced for ONNX or compiled)."""
    return (
        _ONEDNN_CONV is not None
        and x.device.type == 'cpu'
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled('cpu')
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_compiling()
    )


def conv_bn(
    x: torch.Tensor,
    module: ConvBN2d,
    gelu: bool = False,
    residual: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``act(module(x) + residual)`` with the batch norm folded into the convolution.

    On the CPU in float32 (no autocast, no gradients) the convolution, its bias and the
    GELU (or the residual sum) run as one oneDNN kernel, the one ``torch.compile`` uses
    for the same pattern; elsewhere ``F.conv2d`` and ``F.gelu``.

    Args:
        x (Tensor): ``(B, C_in, H, W)``, best channels-last.
        module (ConvBN2d): the convolution and its batch norm.
        gelu (bool): apply the exact (erf) GELU last.
        residual (Tensor, optional): added before the GELU, shaped as the output.

    Returns:
        Tensor: ``(B, C_out, H', W')``.
    """
    weight, bias = fold_conv_bn(module)
    conv = module.conv2d
    geometry = (conv.padding, conv.stride, conv.dilation, conv.groups)
    if _onednn_ops_apply(x):
        if residual is not None:
            out = _ONEDNN_CONV.binary(
                x, residual, weight, bias, *geometry, 'add', 1.0, None, [], ''
            )
            return F.gelu(out) if gelu else out
        if gelu:
            return _ONEDNN_CONV(x, weight, bias, *geometry, 'gelu', [None], 'none')
        return _ONEDNN_CONV(x, weight, bias, *geometry, 'none', [], '')
    out = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    if residual is not None:
        out = out + residual
    return F.gelu(out) if gelu else out


def banded_rows(
    x: torch.Tensor,
    stride: int,
    hidden_channels: int,
    rows_fn: Callable[[torch.Tensor, int, int, int], torch.Tensor],
) -> torch.Tensor:
    """Run a block that ends in a 3x3, padding-1 convolution band by band over output rows.

    The block maps ``x`` to a hidden map of ``hidden_channels`` channels at ``x``'s
    resolution (pointwise: 1x1 convolutions, activations), then a 3x3 convolution with
    padding 1 and ``stride`` reads it. Output rows ``[o0, o1)`` need input rows
    ``[stride * (o0 - 1), stride * (o1 - 1) + 2)`` (clipped to the map): each band is read
    with one extra row above, whose output, made from the band's own zero padding, is
    dropped, as is the extra row below. At the map's top and bottom the padding is the
    convolution's own. So the bands join into exactly the unbanded result, and no hidden
    map larger than :data:`BAND_BYTES` is ever built.

    Args:
        x (Tensor): ``(B, C, H, W)`` channels-last map.
        stride (int): Stride of the block's 3x3 convolution.
        hidden_channels (int): Channels of the block's largest map (at ``H x W``).
        rows_fn (callable): ``rows_fn(x_band, o0, o1, drop)`` returns the block's output
            rows ``[o0, o1)``: its output on ``x_band`` with the first ``drop`` rows
            dropped and ``o1 - o0`` rows kept, ``(B, C_out, o1 - o0, W')``.

    Returns:
        Tensor: ``(B, C_out, H', W')``, ``H' = (H - 1) // stride + 1``.
    """
    b, _, h, w = x.shape
    out_h = (h - 1) // stride + 1
    rows = _rows_per_band(x, b * hidden_channels * w * stride, out_h)
    if rows == out_h:
        return rows_fn(x, 0, out_h, 0)
    bands = []
    for o0 in range(0, out_h, rows):
        o1 = min(o0 + rows, out_h)
        start = stride * (o0 - 1) if o0 else 0
        end = min(stride * (o1 - 1) + 2, h)
        bands.append(rows_fn(x[:, :, start:end], o0, o1, o0 - start // stride))
    return join_bands(bands, dim=2)


def _rows_per_band(x: torch.Tensor, values_per_row: int, total_rows: int) -> int:
    """Output rows per band when one output row needs a hidden map of ``values_per_row``
    elements of ``x``'s dtype: as many as :data:`BAND_BYTES` holds (at least one), or all
    ``total_rows`` (one band) when they fit or the eager oneDNN path does not run (traced,
    exported, autograd: the plain kernels, one graph)."""
    if not _onednn_ops_apply(x):
        return total_rows
    return min(total_rows, max(1, BAND_BYTES // (values_per_row * x.element_size())))


def join_bands(bands: List[torch.Tensor], dim: int) -> torch.Tensor:
    """The bands of rows of one map (along ``dim``) joined into the whole map."""
    return torch.cat(bands, dim)


def _band_of(x: torch.Tensor, o0: int, o1: int) -> torch.Tensor:
    """Rows ``[o0, o1)`` of a ``(B, C, H, W)`` map, channels-last contiguous."""
    return x[:, :, o0:o1].contiguous(memory_format=CHANNELS_LAST)


def _mbconv(x: torch.Tensor, block) -> torch.Tensor:
    """MBConv on a channels-last map: expand (1x1), depthwise 3x3, project (1x1), residual,
    each convolution with its batch norm folded; in bands of rows when large."""

    def rows(band: torch.Tensor, o0: int, o1: int, drop: int) -> torch.Tensor:
        y = conv_bn(band, block.conv1, gelu=True)
        y = conv_bn(y, block.conv2, gelu=True)
        y = _band_of(y, drop, drop + o1 - o0)
        return conv_bn(y, block.conv3, gelu=True, residual=_band_of(x, o0, o1))

    return banded_rows(x, 1, block.conv1.conv2d.out_channels, rows)


def _patch_merging(x: torch.Tensor, merge) -> torch.Tensor:
    """``(B, C, H, W)`` channels-last map -> ``(B, H', W', C')`` tokens (a view)."""

    def rows(band: torch.Tensor, o0: int, o1: int, drop: int) -> torch.Tensor:
        y = conv_bn(band, merge.conv1, gelu=True)
        return _band_of(conv_bn(y, merge.conv2, gelu=True), drop, drop + o1 - o0)

    conv2 = merge.conv2.conv2d
    x = banded_rows(x, conv2.stride[0], conv2.in_channels, rows)
    x = conv_bn(x, merge.conv3)
    return x.permute(0, 2, 3, 1)


def _window_attention(x: torch.Tensor, block) -> torch.Tensor:
    """The attention branch of a ``TinyViTBlock`` on tokens ``(B, H, W, C)``."""
    attn = block.attn
    ws = block.window_size
    b, h, w, c = x.shape
    pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    ph, pw = h + pad_b, w + pad_r
    nh, nw = ph // ws, pw // ws
    # (B * nh * nw, ws * ws, C)
    x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
    n = ws * ws
    qkv = attn.qkv(attn.norm(x)).view(x.shape[0], n, attn.num_heads, -1)
    q, k, v = qkv.permute(0, 2, 1, 3).split([attn.key_dim, attn.key_dim, attn.d], dim=3)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=_bias_table(attn, q.dtype), scale=attn.scale
    )
    out = attn.proj(out.transpose(1, 2).reshape(-1, n, attn.dh))
    # windows back to (B, ph, pw, C), cropped: a strided view the residual sum reads
    out = out.view(b, nh, nw, ws, ws, c).transpose(2, 3)
    return out.reshape(b, ph, pw, c)[:, :h, :w] if (pad_b or pad_r) else out.reshape(b, h, w, c)


def _bias_table(attn, dtype: torch.dtype) -> torch.Tensor:
    """``(1, heads, N, N)`` additive attention bias of ``attn`` (a 4-D mask keeps SDPA on
    its fused CPU kernel; 3-D falls back to the math path).

    Gathered from ``attention_biases`` once per version of that parameter (an in-place
    update or ``load_state_dict`` bumps it), so it always follows the weights.
    """
    param = attn.attention_biases
    key = (param._version, param.data_ptr(), param.device, dtype)
    cached = attn.__dict__.get('_fused_bias')
    if cached is None or cached[0] != key or torch.is_grad_enabled():
        table = param[:, attn.attention_bias_idxs].to(dtype)[None]
        if torch.is_grad_enabled():
            return table
        attn.__dict__['_fused_bias'] = cached = (key, table)
    return cached[1]


def _tinyvit_block(x: torch.Tensor, block) -> torch.Tensor:
    """``TinyViTBlock`` on tokens ``(B, H, W, C)`` (eval mode: no dropout, no drop path)."""
    x = x + _window_attention(x, block)
    # (B, H, W, C) contiguous is a channels-last (B, C, H, W) map: no copy either way
    x = conv_bn(x.permute(0, 3, 1, 2), block.local_conv).permute(0, 2, 3, 1)
    mlp = block.mlp
    b, h, w, _ = x.shape
    rows = _rows_per_band(x, b * w * mlp.fc1.out_features, h)
    if rows == h:
        return x + _mlp(x, mlp)
    # tokens are independent in the MLP: rows of them at a time keep the hidden map small
    return join_bands(
        [x[:, i : i + rows] + _mlp(x[:, i : i + rows], mlp) for i in range(0, h, rows)], 1
    )


def _mlp(x: torch.Tensor, mlp) -> torch.Tensor:
    """A TinyViT block's MLP (LayerNorm, fc1, GELU, fc2) on tokens ``(B, h, W, C)``."""
    hidden = mlp.norm(x)
    if _ONEDNN_LINEAR is not None and _onednn_ops_apply(hidden):
        # fc1 + its bias + the exact GELU in one oneDNN kernel
        shape = hidden.shape
        hidden = _ONEDNN_LINEAR(
            hidden.reshape(-1, shape[-1]), mlp.fc1.weight, mlp.fc1.bias, 'gelu', [None], 'none'
        ).view(*shape[:-1], -1)
    else:
        hidden = mlp.act(mlp.fc1(hidden))
    return mlp.fc2(hidden)


def fused_forward(encoder, x: torch.Tensor) -> torch.Tensor:
    """:meth:`SAMTinyViT.plain_forward` in fused kernels (eval mode).

    Args:
        encoder (SAMTinyViT): the encoder whose weights to use.
        x (Tensor): ``(B, C_in, S, S)`` normalized images.

    Returns:
        Tensor: ``(B, out_channels, S / 16, S / 16)`` (contiguous), equal to
        ``encoder.plain_forward(x)`` within float rounding.
    """
    return fused_features(encoder, x)[0]


def fused_features(
    encoder, x: torch.Tensor, interm_stage: Optional[int] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """:func:`fused_forward` and the output of stage ``interm_stage`` (or None), as
    :meth:`SAMTinyViT.plain_features` returns them."""
    interm = None
    seq = encoder.patch_embed.seq
    x = x.contiguous(memory_format=CHANNELS_LAST)
    x = conv_bn(conv_bn(x, seq[0], gelu=True), seq[2])
    conv_stage = encoder.stages[0]
    for block in conv_stage.blocks:  # MBConv: expand, depthwise, project, residual
        x = _mbconv(x, block)
    x = _patch_merging(x, conv_stage.downsample)
    for i, stage in enumerate(encoder.stages[1:], start=1):
        for block in stage.blocks:
            x = _tinyvit_block(x, block)
        if stage.downsample is not None:
            x = _patch_merging(x.permute(0, 3, 1, 2), stage.downsample)
        if i == interm_stage:
            interm = x.permute(0, 3, 1, 2).contiguous()
    x = encoder.channel_reduction(x.permute(0, 3, 1, 2))
    return x.contiguous(), interm
