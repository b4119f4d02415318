"""MobileSAM's image encoder: TinyViT with a stride-1 last merge and SAM's 256-channel neck.

MobileSAM (Zhang et al., 2023, https://github.com/ChaoningZhang/MobileSAM) distils SAM's
ViT-H encoder into a TinyViT-5M. Its TinyViT differs from the ImageNet one in two places:
the last patch merging keeps the resolution (stride 1), so the features stay at 1/16 of
the input (64 x 64 for 1024 px), and a SAM neck (1x1 conv, LayerNorm2d, 3x3 conv,
LayerNorm2d) maps them to 256 channels. There is no classifier.

The blocks are mmpretrain's TinyViT blocks (``ConvBN2d``, ``MBConvBlock``,
``TinyViTBlock`` with ``LeAttention``, ``ConvStage``, ``BasicStage``), so the parameter
names are mmpretrain's (``stages.N.blocks.M.conv1.conv2d``, ``...attn.qkv``,
``...local_conv.bn2d``); :mod:`mmsam.utils.checkpoint_keys` maps MobileSAM's official
``image_encoder.layers.N...c/bn`` names onto them. The neck is ``channel_reduction.N`` as
in :class:`SAMImageEncoder`.

The plain forward runs those modules as they are. At inference (``fused=True`` and eval
mode) :mod:`.sam_tinyvit_fused` runs the same weights faster (convolutions with their
batch norm folded, SDPA, channels-last maps, fewer copies); both are tested against
each other and against the official MobileSAM.
"""

import functools
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.models.backbones.tinyvit import (
    BasicStage,
    ConvBN2d,
    ConvStage,
    PatchEmbed,
    PatchMerging,
)
from mmpretrain.models.utils import LeAttention
from mmpretrain.registry import MODELS

from ..layers import LayerNorm2d
from ..utils import autocast_context, parse_autocast_dtype
from ..utils.arch_settings import arch_settings

ArchSettings = Dict[str, List[int]]

#: Strides of the three patch mergings: the features end at 1/16 of the input, as
#: SAM's ViT's (the patch embedding divides by 4). MobileSAM's last merging has stride 1.
MERGE_STRIDES = (2, 2, 1)

#: The stage whose output (after its patch merging: ``channels[2]`` channels at 1/16 of
#: the input) is the early feature Light HQ-SAM's decoder reads (``out_interm``).
INTERM_STAGE = 1


class StridedPatchMerging(PatchMerging):
    """mmpretrain's TinyViT ``PatchMerging`` with a chosen depthwise stride.

    Args:
        resolution (tuple[int, int]): Input token grid ``(H, W)``.
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        act_cfg (dict): Activation. Defaults to GELU.
        stride (int): Stride of the depthwise 3x3 convolution (mmpretrain: 2).

    Shape:
        Input ``(B, C_in, H, W)`` or tokens ``(B, H * W, C_in)``; output tokens
        ``(B, H' * W', C_out)`` with ``H' = ceil(H / stride)``.
    """

    def __init__(
        self,
        resolution: Tuple[int, int],
        in_channels: int,
        out_channels: int,
        act_cfg: Optional[dict] = None,
        stride: int = 2,
    ) -> None:
        super().__init__(resolution, in_channels, out_channels, act_cfg or dict(type='GELU'))
        if stride != 2:
            self.conv2 = ConvBN2d(
                out_channels,
                out_channels,
                kernel_size=3,
                stride=stride,
                padding=1,
                groups=out_channels,
            )
        self.stride = stride
        self.out_resolution = tuple((side - 1) // stride + 1 for side in resolution)


@MODELS.register_module()
class SAMTinyViT(BaseModule):
    """MobileSAM's TinyViT image encoder, as a headless mmpretrain backbone.

    Args:
        arch (str | dict): ``'5m'`` (MobileSAM), ``'11m'`` or ``'21m'``, or a dict with
            ``channels``, ``depths``, ``num_heads`` and ``window_sizes`` (one entry per
            stage; stage 0 is convolutional, its heads and window are not used).
            Defaults to ``'5m'``.
        img_size (int): Side of the (padded) input; the token grids of the attention
            stages are fixed by it. Defaults to 1024.
        in_channels (int): Input channels. Defaults to 3.
        out_channels (int): Channels of the neck. Defaults to 256.
        mlp_ratio (float): Hidden ratio of the attention stages' MLPs. Defaults to 4.
        mbconv_expand_ratio (float): Hidden ratio of the MBConv blocks. Defaults to 4.
        local_conv_size (int): Depthwise convolution between attention and MLP.
            Defaults to 3.
        drop_rate (float): Dropout rate. Defaults to 0.
        drop_path_rate (float): Stochastic depth, linearly increasing. Defaults to 0.
        fused (bool): In eval mode, run the fused inference path
            (:func:`.sam_tinyvit_fused.fused_forward`: same weights, outputs equal within
            float rounding, about 3x faster on a CPU). False always runs the modules as
            they are. Defaults to True.
        autocast_dtype (str | torch.dtype, optional): Run the forward under
            ``torch.autocast`` (``'bfloat16'``; ``'float16'`` on CUDA); outputs are
            float32. Defaults to None (float32).
        frozen_stages (int): Freeze the patch embedding and the first ``frozen_stages``
            stages (and the neck when all four are). Defaults to 0.
        out_interm (bool): Also return the early feature Light HQ-SAM reads: stage
            :data:`INTERM_STAGE`'s output ``(B, channels[2], img_size / 16, img_size / 16)``
            (:class:`mmsam.models.SAM` sets it when its decoder asks). Defaults to False.
        init_cfg (dict, optional): Initialization config.

    Shape:
        Input ``(B, in_channels, img_size, img_size)``; output a one-element tuple
        ``((B, out_channels, img_size / 16, img_size / 16),)``, as
        :class:`SAMImageEncoder`'s; with ``out_interm`` the early feature follows.
    """

    arch_zoo: Dict[str, ArchSettings] = {
        '5m': dict(
            channels=[64, 128, 160, 320],
            depths=[2, 2, 6, 2],
            num_heads=[2, 4, 5, 10],
            window_sizes=[7, 7, 14, 7],
        ),
        '11m': dict(
            channels=[64, 128, 256, 448],
            depths=[2, 2, 6, 2],
            num_heads=[2, 4, 8, 14],
            window_sizes=[7, 7, 14, 7],
        ),
        '21m': dict(
            channels=[96, 192, 384, 576],
            depths=[2, 2, 6, 2],
            num_heads=[3, 6, 12, 18],
            window_sizes=[7, 7, 14, 7],
        ),
    }

    def __init__(
        self,
        arch: Union[str, ArchSettings] = '5m',
        img_size: int = 1024,
        in_channels: int = 3,
        out_channels: int = 256,
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        fused: bool = True,
        autocast_dtype: Optional[Union[str, torch.dtype]] = None,
        frozen_stages: int = 0,
        out_interm: bool = False,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        channels = self.arch_settings['channels']
        depths = self.arch_settings['depths']
        self.img_size = int(img_size)
        if self.img_size % 16 != 0:
            raise ValueError(f'img_size must be a multiple of 16, got {img_size}')
        self.patch_size = 16  # the features are at 1/16 of the input, as SAM's ViT's
        self.fused = bool(fused)
        self.autocast_dtype = parse_autocast_dtype(autocast_dtype)
        self.out_channels = out_channels
        self.out_interm = bool(out_interm)

        self.patch_embed = PatchEmbed(
            in_channels=in_channels,
            embed_dim=channels[0],
            resolution=(self.img_size, self.img_size),
            act_cfg=dict(type='GELU'),
        )
        resolution = tuple(self.patch_embed.patches_resolution)
        total = sum(depths)
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(channels, depths)):
            last = i == len(channels) - 1
            common = dict(
                in_channels=dim,
                resolution=resolution,
                depth=depth,
                drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                downsample=None
                if last
                else functools.partial(StridedPatchMerging, stride=MERGE_STRIDES[i]),
                out_channels=channels[min(i + 1, len(channels) - 1)],
                act_cfg=dict(type='GELU'),
            )
            if i == 0:
                stage = ConvStage(conv_expand_ratio=mbconv_expand_ratio, **common)
            else:
                stage = BasicStage(
                    num_heads=self.arch_settings['num_heads'][i],
                    window_size=self.arch_settings['window_sizes'][i],
                    mlp_ratio=mlp_ratio,
                    drop=drop_rate,
                    local_conv_size=local_conv_size,
                    **common,
                )
            self.stages.append(stage)
            resolution = tuple(stage.resolution)
            if i == INTERM_STAGE:
                self.interm_resolution = resolution
        self.out_resolution = resolution
        self.channel_reduction = nn.Sequential(
            nn.Conv2d(channels[-1], out_channels, kernel_size=1, bias=False),
            LayerNorm2d(out_channels, eps=1e-6),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_channels, eps=1e-6),
        )
        # mmpretrain's LeAttention caches its bias table (``ab``) as a plain attribute
        # when switched to eval mode: stale after load_state_dict or a parameter update,
        # and not moved by .to(device). Rebuild it before each eval-mode call instead.
        for module in self.modules():
            if isinstance(module, LeAttention):
                module.register_forward_pre_hook(_refresh_attention_bias)
        self.frozen_stages = frozen_stages
        if frozen_stages > 0:
            self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, ArchSettings]) -> ArchSettings:
        required = ('channels', 'depths', 'num_heads', 'window_sizes')
        arch = arch_settings(arch, cls.arch_zoo, required)
        lengths = {len(arch[k]) for k in required}
        if lengths != {4}:
            raise ValueError(f'each arch entry needs 4 values (one per stage), got {arch}')
        return {k: list(arch[k]) for k in sorted(required)}

    def _freeze_stages(self) -> None:
        frozen = [self.patch_embed] + list(self.stages[: self.frozen_stages])
        if self.frozen_stages >= len(self.stages):
            frozen.append(self.channel_reduction)
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'SAMTinyViT':
        """Switch mode, keeping frozen stages in eval mode."""
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Depth of a parameter for layer-wise learning-rate decay (as MobileSAM's TinyViT).

        The patch embedding is depth 0, block ``k`` (counted over all stages) is
        depth ``k + 1`` (a stage's patch merging takes its last block's depth), and
        the neck and every parameter outside the encoder get the last depth.

        Args:
            param_name (str): e.g. ``'backbone.stages.1.blocks.0.attn.qkv.weight'``.
            prefix (str): Prefix of the encoder's parameters. Defaults to ``''``.

        Returns:
            tuple[int, int]: ``(depth, num_blocks + 2)``.
        """
        depths = self.arch_settings['depths']
        num_layers = sum(depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        parts = param_name[len(prefix) :].split('.')
        if parts[0] == 'patch_embed':
            return 0, num_layers
        if parts[0] != 'stages':
            return num_layers - 1, num_layers
        stage = int(parts[1])
        before = sum(depths[:stage])
        block = int(parts[3]) if parts[2] == 'blocks' else depths[stage] - 1
        return before + block + 1, num_layers

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        """Encode images.

        Args:
            x (Tensor): ``(B, in_channels, img_size, img_size)`` normalized images.

        Returns:
            tuple[Tensor]: ``((B, out_channels, img_size / 16, img_size / 16),)``; with
            ``out_interm`` also the early feature ``(B, channels[2], S / 16, S / 16)``.
        """
        expected = (self.img_size, self.img_size)
        if x.dim() != 4 or tuple(x.shape[2:]) != expected:
            raise ValueError(
                f'expected images of shape (B, C, {self.img_size}, {self.img_size}) '
                f'(TinyViT attends on fixed token grids), got {tuple(x.shape)}'
            )
        if self.autocast_dtype is None:
            return self._forward(x)
        with autocast_context(x.device, self.autocast_dtype):
            outs = self._forward(x)
        return tuple(out.float() for out in outs)

    def _forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        interm_stage = INTERM_STAGE if self.out_interm else None
        if self.fused and not self.training:
            from .sam_tinyvit_fused import fused_features

            out, interm = fused_features(self, x, interm_stage)
        else:
            out, interm = self.plain_features(x, interm_stage)
        return (out,) if interm is None else (out, interm)

    def plain_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The modules as they are (MobileSAM's ``TinyViT.forward_features``).

        Args:
            x (Tensor): ``(B, C_in, S, S)``.

        Returns:
            Tensor: ``(B, out_channels, S / 16, S / 16)``.
        """
        return self.plain_features(x)[0]

    def plain_features(
        self, x: torch.Tensor, interm_stage: Optional[int] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """:meth:`plain_forward` and the output of stage ``interm_stage`` (or None)
        as a ``(B, C, h, w)`` map."""
        x = self.patch_embed(x)  # (B, C0, S/4, S/4)
        interm = None
        for i, stage in enumerate(self.stages):
            x = stage(x)  # tokens (B, L, C) after the first patch merging
            if i == interm_stage:
                h, w = self.interm_resolution
                interm = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        h, w = self.out_resolution
        x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        return self.channel_reduction(x), interm


def _refresh_attention_bias(module: LeAttention, args: tuple) -> None:
    """Forward pre-hook: the eval-mode bias table of ``module`` from its current weights."""
    if not module.training:
        module.ab = module.attention_biases[:, module.attention_bias_idxs]
