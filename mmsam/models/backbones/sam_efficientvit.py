"""EfficientViT-SAM's image encoders: EfficientViT-L / XL backbones and their SAM neck.

EfficientViT-SAM (Zhang et al., 2024, https://github.com/mit-han-lab/efficientvit) replaces
SAM's ViT-H by an EfficientViT: convolutional stages (``res``, ``fmb`` = fused MBConv,
``mb`` = MBConv) followed by stages of EfficientViT blocks (multi-scale ReLU linear
attention ``LiteMLA`` and an MBConv). A neck projects three stages to 256 channels,
resamples them (bicubic) to SAM's 64 x 64 grid, sums them, refines the sum with fused
MBConvs and maps it to the 256-channel embedding, followed by a LayerNorm2d. The prompt
encoder and mask decoder are SAM's.

The L models encode a 512 px input, the XL models a 1024 px one; prompts and masks stay in
SAM's 1024 px frame either way (see :class:`mmsam.models.SAMDataPreprocessor`'s
``encoder_image_size``). Batch and layer norms use ``eps=1e-6`` (the reference's
``set_norm_eps``), activations are tanh-approximated GELUs.

Convolutions are mmcv's ``ConvModule`` (``conv``, ``bn``, ``activate``); the module tree
otherwise follows the reference, without its ``op_list`` wrappers.
:mod:`mmsam.utils.checkpoint_keys` maps the official ``image_encoder.backbone.*``,
``image_encoder.neck.*`` and ``image_encoder.norm.*`` names onto these.
"""

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..layers import LayerNorm2d
from ..utils.arch_settings import arch_settings

#: Batch and layer norm epsilon of every published EfficientViT-SAM model.
NORM_EPS = 1e-6
#: The activation of every published EfficientViT-SAM model.
ACT_CFG = dict(type='GELU', approximate='tanh')

ArchSettings = Dict[str, object]


def conv_layer(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    norm: bool = True,
    act: bool = True,
) -> ConvModule:
    """The reference's ``ConvLayer``: a 'same'-padded convolution, batch norm, GELU.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Odd kernel side. Defaults to 3.
        stride (int): Stride. Defaults to 1.
        groups (int): Convolution groups. Defaults to 1.
        bias (bool): Convolution bias. Defaults to False.
        norm (bool): Batch norm (``eps=1e-6``) after the convolution. Defaults to True.
        act (bool): GELU (tanh) last. Defaults to True.

    Returns:
        ConvModule: ``(B, C_in, H, W)`` -> ``(B, C_out, H / stride, W / stride)``.
    """
    return ConvModule(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        groups=groups,
        bias=bias,
        norm_cfg=dict(type='BN', eps=NORM_EPS) if norm else None,
        act_cfg=ACT_CFG if act else None,
    )


def _hidden(fewer_norm: bool) -> dict:
    """``conv_layer`` arguments of a block's convolutions before its last one:
    ``fewer_norm`` trades their batch norm for a bias (the last keeps its norm)."""
    return dict(bias=fewer_norm, norm=not fewer_norm)


class ResBlock(nn.Sequential):
    """Two 3x3 convolutions ``conv1``, ``conv2`` (the reference's ``ResBlock``);
    ``fewer_norm`` gives the first a bias instead of a norm.

    Shape:
        ``(B, C_in, H, W)`` -> ``(B, C_out, H / stride, W / stride)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, fewer_norm: bool = False
    ) -> None:
        super().__init__(
            OrderedDict(
                conv1=conv_layer(in_channels, in_channels, 3, stride, **_hidden(fewer_norm)),
                conv2=conv_layer(in_channels, out_channels, 3, act=False),
            )
        )


class MBConv(nn.Sequential):
    """Inverted bottleneck (the reference's ``MBConv``, and ``FusedMBConv`` when ``fused``).

    Unfused: a 1x1 expansion ``inverted_conv`` and a 3x3 depthwise ``depth_conv``;
    fused: one 3x3 expansion ``spatial_conv`` in their place. Both end with a 1x1
    projection ``point_conv`` without activation.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the 3x3 convolution. Defaults to 1.
        expand_ratio (float): Hidden channels per input channel. Defaults to 4.
        fewer_norm (bool): A bias instead of a norm before the projection. Defaults
            to False.
        fused (bool): The fused block. Defaults to False.

    Shape:
        ``(B, C_in, H, W)`` -> ``(B, C_out, H / stride, W / stride)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 4,
        fewer_norm: bool = False,
        fused: bool = False,
    ) -> None:
        mid = round(in_channels * expand_ratio)
        hidden = _hidden(fewer_norm)
        if fused:
            layers = dict(spatial_conv=conv_layer(in_channels, mid, 3, stride, **hidden))
        else:
            layers = dict(
                inverted_conv=conv_layer(in_channels, mid, 1, **hidden),
                depth_conv=conv_layer(mid, mid, 3, stride, groups=mid, **hidden),
            )
        layers['point_conv'] = conv_layer(mid, out_channels, 1, act=False)
        super().__init__(OrderedDict(layers))


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention (the reference's ``LiteMLA``).

    ``qkv`` is a 1x1 convolution; each scale aggregates it with a depthwise ``s x s``
    and a grouped 1x1 convolution; every head (``dim`` channels of q, k and v) attends
    linearly: ``out = (v [k]^T) relu(q) / (sum_n relu(k) . relu(q) + eps)``.

    Args:
        channels (int): Input and output channels.
        dim (int): Channels per head. Defaults to 32.
        scales (Sequence[int]): Aggregation kernels. Defaults to ``(5,)``.
        eps (float): Added to the normalizer. Defaults to 1e-15.

    Shape:
        ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """

    def __init__(
        self, channels: int, dim: int = 32, scales: Sequence[int] = (5,), eps: float = 1e-15
    ) -> None:
        super().__init__()
        heads = channels // dim
        total = heads * dim
        self.dim = dim
        self.eps = eps
        self.qkv = conv_layer(channels, 3 * total, 1, norm=False, act=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total, 3 * total, s, padding=s // 2, groups=3 * total, bias=False),
                nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False),
            )
            for s in scales
        )
        self.proj = conv_layer(total * (1 + len(scales)), channels, 1, act=False)

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Linear attention of every head, in float32.

        Args:
            qkv (Tensor): ``(B, 3 * D * heads', H, W)``: per head ``q``, ``k``, ``v``.

        Returns:
            Tensor: ``(B, D * heads', H, W)``.
        """
        b, _, h, w = qkv.shape
        with torch.autocast(device_type=qkv.device.type, enabled=False):
            qkv = qkv.float().reshape(b, -1, 3 * self.dim, h * w)
            q = F.relu(qkv[:, :, : self.dim])
            k = F.relu(qkv[:, :, self.dim : 2 * self.dim])
            v = F.pad(qkv[:, :, 2 * self.dim :], (0, 0, 0, 1), mode='constant', value=1.0)
            out = torch.matmul(torch.matmul(v, k.transpose(-1, -2)), q)
            out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
        return out.reshape(b, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        h, w = qkv.shape[-2:]
        if h * w <= self.dim:
            raise ValueError(f'LiteMLA needs more than {self.dim} tokens, got {h} x {w}')
        return self.proj(self.attend(qkv).to(qkv.dtype))


class Residual(nn.Module):
    """``main(x) + x`` (the reference's ``ResidualBlock`` with an identity shortcut)."""

    def __init__(self, main: nn.Module) -> None:
        super().__init__()
        self.main = main

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + x


class Downsample(nn.Module):
    """A stage's first, stride-2 block, without shortcut (``ResidualBlock(block, None)``)."""

    def __init__(self, main: nn.Module) -> None:
        super().__init__()
        self.main = main

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class EfficientViTBlock(nn.Module):
    """Attention then MBConv, both residual (the reference's ``EfficientViTBlock``).

    Shape:
        ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """

    def __init__(
        self, channels: int, dim: int = 32, expand_ratio: float = 4, scales: Sequence[int] = (5,)
    ) -> None:
        super().__init__()
        self.context_module = Residual(LiteMLA(channels, dim, scales))
        self.local_module = Residual(
            MBConv(channels, channels, expand_ratio=expand_ratio, fewer_norm=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))


def local_block(
    kind: str,
    in_channels: int,
    out_channels: int,
    stride: int,
    expand_ratio: float,
    fewer_norm: bool,
) -> nn.Module:
    """The reference's ``EfficientViTLargeBackbone.build_local_block``."""
    if kind == 'res':
        return ResBlock(in_channels, out_channels, stride, fewer_norm)
    if kind == 'fmb':
        return MBConv(in_channels, out_channels, stride, expand_ratio, fewer_norm, fused=True)
    if kind == 'mb':
        return MBConv(in_channels, out_channels, stride, expand_ratio, fewer_norm)
    raise ValueError(f"block must be 'res', 'fmb' or 'mb', got {kind!r}")


class SAMNeck(nn.Module):
    """EfficientViT-SAM's neck: three stages to one ``(B, 256, E, E)`` embedding.

    Each input stage goes through a 1x1 convolution with batch norm and a bicubic resize
    to ``E x E``; the sum is refined by ``depth`` residual fused MBConvs and mapped to
    ``out_channels`` by a 1x1 convolution with bias, then a LayerNorm2d.

    Args:
        in_channels (Sequence[int]): Channels of the input stages (deepest first).
        embed_size (int): Side ``E`` of the embedding grid. Defaults to 64.
        width (int): Channels of the neck. Defaults to 256.
        depth (int): Fused MBConv blocks. Defaults to 4.
        expand_ratio (float): Their hidden ratio. Defaults to 1.
        out_channels (int): Channels of the embedding. Defaults to 256.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        embed_size: int = 64,
        width: int = 256,
        depth: int = 4,
        expand_ratio: float = 1,
        out_channels: int = 256,
    ) -> None:
        super().__init__()
        self.embed_size = int(embed_size)
        self.lateral_convs = nn.ModuleList(conv_layer(c, width, 1, act=False) for c in in_channels)
        self.blocks = nn.Sequential(
            *(
                Residual(MBConv(width, width, expand_ratio=expand_ratio, fused=True))
                for _ in range(depth)
            )
        )
        self.out_conv = conv_layer(width, out_channels, 1, bias=True, norm=False, act=False)
        self.norm = LayerNorm2d(out_channels, eps=NORM_EPS)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Bicubic resampling to ``(E, E)`` in float32 (identity when already there)."""
        size = (self.embed_size, self.embed_size)
        if tuple(x.shape[-2:]) == size:
            return x
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.interpolate(x.float(), size=size, mode='bicubic', align_corners=False)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse the stages.

        Args:
            feats (Sequence[Tensor]): One ``(B, C_i, h_i, w_i)`` map per input stage.

        Returns:
            Tensor: ``(B, out_channels, E, E)``.
        """
        lateral = [self.resize(conv(f)) for conv, f in zip(self.lateral_convs, feats)]
        x = lateral[-1]
        for feat in reversed(lateral[:-1]):  # the reference's x0 + (x1 + (x2 ...))
            x = feat + x
        return self.norm(self.out_conv(self.blocks(x)))


#: What the L models share (the reference's ``efficientvit_sam_l*``): 512 px inputs, the
#: neck reads stages 4, 3, 2.
_L_ARCH = dict(
    widths=[32, 64, 128, 256, 512],
    blocks=['res', 'fmb', 'fmb', 'mb', 'att'],
    expands=[1, 4, 4, 4, 6],
    fewer_norm=[False, False, False, True, True],
    neck_stages=[4, 3, 2],
    neck_expand=1,
    input_size=512,
)
#: What the XL models share (``efficientvit_sam_xl*``): 1024 px inputs, six stages with
#: 3x3 attention aggregation, the neck reads stages 5, 4, 3.
_XL_ARCH = dict(
    widths=[32, 64, 128, 256, 512, 1024],
    blocks=['res', 'fmb', 'fmb', 'fmb', 'att@3', 'att@3'],
    expands=[1, 4, 4, 4, 4, 6],
    fewer_norm=[False, False, False, False, True, True],
    neck_stages=[5, 4, 3],
    neck_expand=4,
    input_size=1024,
)


@MODELS.register_module()
class SAMEfficientViT(BaseModule):
    """EfficientViT-SAM's image encoder (EfficientViT-L/XL and the SAM neck), headless.

    Args:
        arch (str | dict): ``'l0'``, ``'l1'``, ``'l2'``, ``'xl0'`` or ``'xl1'``, or a dict
            with the keys of :attr:`arch_zoo`'s entries. Defaults to ``'l0'``.
        img_size (int): Side of SAM's frame (prompt and mask coordinates); the embedding
            is ``img_size / 16`` on a side. Defaults to 1024.
        input_size (int, optional): Side of the encoder's padded pixel input; None
            takes the arch's (512 for the L models, 1024 for the XL ones).
        in_channels (int): Input channels. Defaults to 3.
        out_channels (int): Channels of the embedding. Defaults to 256.
        qkv_dim (int): Channels per attention head. Defaults to 32.
        init_cfg (dict, optional): Initialization config.

    Shape:
        Input ``(B, in_channels, input_size, input_size)``; output a one-element tuple
        ``((B, out_channels, img_size / 16, img_size / 16),)``, as
        :class:`SAMImageEncoder`'s.
    """

    #: ``widths``/``depths``/``blocks``/``expands``/``fewer_norm``: one entry per stage
    #: (the reference's ``EfficientViTLargeBackbone``); ``neck_stages``: the stages the
    #: neck reads (deepest first); ``neck_depth``/``neck_expand``: its fused MBConvs;
    #: ``input_size``: the published input resolution.
    arch_zoo: Dict[str, ArchSettings] = {
        'l0': dict(_L_ARCH, depths=[1, 1, 1, 4, 4], neck_depth=4),
        'l1': dict(_L_ARCH, depths=[1, 1, 1, 6, 6], neck_depth=8),
        'l2': dict(_L_ARCH, depths=[1, 2, 2, 8, 8], neck_depth=12),
        'xl0': dict(_XL_ARCH, depths=[0, 1, 1, 2, 3, 3], neck_depth=6),
        'xl1': dict(_XL_ARCH, depths=[1, 2, 2, 4, 6, 6], neck_depth=12),
    }

    def __init__(
        self,
        arch: Union[str, ArchSettings] = 'l0',
        img_size: int = 1024,
        input_size: Optional[int] = None,
        in_channels: int = 3,
        out_channels: int = 256,
        qkv_dim: int = 32,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        s = self.arch_settings
        self.img_size = int(img_size)
        if self.img_size % 16 != 0:
            raise ValueError(f'img_size must be a multiple of 16, got {img_size}')
        self.input_size = int(input_size if input_size is not None else s['input_size'])
        self.patch_size = 16  # the embedding is at 1/16 of SAM's frame, as SAM's ViT's
        self.out_channels = out_channels
        self.stages = nn.ModuleList()
        widths, expands, fewer = s['widths'], s['expands'], s['fewer_norm']
        stage0: List[nn.Module] = [conv_layer(in_channels, widths[0], 3, stride=2)]
        for _ in range(s['depths'][0]):
            block = local_block(s['blocks'][0], widths[0], widths[0], 1, expands[0], fewer[0])
            stage0.append(Residual(block))
        self.stages.append(nn.Sequential(*stage0))
        channels = widths[0]
        for i in range(1, len(widths)):
            kind = s['blocks'][i]
            down_kind = kind if kind in ('mb', 'fmb') else 'mb'
            stage = [
                Downsample(local_block(down_kind, channels, widths[i], 2, expands[i] * 4, fewer[i]))
            ]
            channels = widths[i]
            for _ in range(s['depths'][i]):
                if kind.startswith('att'):
                    scales = (3,) if kind == 'att@3' else (5,)
                    stage.append(EfficientViTBlock(channels, qkv_dim, expands[i], scales))
                else:
                    block = local_block(kind, channels, channels, 1, expands[i], fewer[i])
                    stage.append(Residual(block))
            self.stages.append(nn.Sequential(*stage))
        self.neck = SAMNeck(
            [widths[i] for i in s['neck_stages']],
            embed_size=self.img_size // self.patch_size,
            depth=s['neck_depth'],
            expand_ratio=s['neck_expand'],
            out_channels=out_channels,
        )

    @classmethod
    def _parse_arch(cls, arch: Union[str, ArchSettings]) -> ArchSettings:
        settings = arch_settings(arch, cls.arch_zoo, cls.arch_zoo['l0'])
        per_stage = ('widths', 'depths', 'blocks', 'expands', 'fewer_norm')
        if len({len(settings[k]) for k in per_stage}) != 1:
            raise ValueError(f'{per_stage} need one entry per stage each, got {arch}')
        return settings

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        """Encode images.

        Args:
            x (Tensor): ``(B, in_channels, input_size, input_size)`` normalized images.

        Returns:
            tuple[Tensor]: ``((B, out_channels, img_size / 16, img_size / 16),)``.
        """
        expected = (self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[2:]) != expected:
            raise ValueError(
                f'expected images of shape (B, C, {self.input_size}, {self.input_size}) '
                f'(this EfficientViT-SAM encoder takes {self.input_size} px inputs: set '
                f"the data preprocessor's encoder_image_size), got {tuple(x.shape)}"
            )
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return (self.neck([feats[i] for i in self.arch_settings['neck_stages']]),)
