"""SAM's image encoder: a ViT with windowed attention and a 256-channel neck.

The parameter names follow mmpretrain's ``ViTSAM`` (``patch_embed.projection``,
``layers.N.ln1``, ``layers.N.attn.qkv``, ``layers.N.ffn.layers.0.0``,
``channel_reduction.N``, ...), so mmpretrain's published SAM backbone
checkpoints load unchanged; :mod:`mmsam.utils.checkpoint_keys` maps the official
``image_encoder.*`` names onto it.
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from mmcv.cnn.bricks.transformer import FFN
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.registry import MODELS

from ..layers import (
    LayerNorm2d,
    RelPosAttention,
    resize_rel_pos,
    window_partition,
    window_unpartition,
)
from ..utils import autocast_context, parse_autocast_dtype

ArchSettings = Dict[str, Union[int, Sequence[int]]]


def resize_abs_pos_embed(
    pos_embed: torch.Tensor, size: Tuple[int, int], mode: str = 'bicubic'
) -> torch.Tensor:
    """Resize an absolute position embedding grid.

    Args:
        pos_embed (Tensor): ``(1, H, W, C)``.
        size (tuple[int, int]): Target ``(h, w)``.
        mode (str): Interpolation mode. Defaults to ``'bicubic'`` (as mmpretrain).

    Returns:
        Tensor: ``(1, h, w, C)``; ``pos_embed`` itself when the size matches.
    """
    if tuple(pos_embed.shape[1:3]) == tuple(size):
        return pos_embed
    grid = pos_embed.permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=size, mode=mode, align_corners=False)
    return grid.permute(0, 2, 3, 1).to(pos_embed.dtype)


class SAMEncoderLayer(BaseModule):
    """Pre-norm transformer layer with optional window attention.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Attention heads.
        feedforward_channels (int): Hidden channels of the MLP.
        window_size (int): Window side; 0 for global attention.
        input_size (tuple[int, int]): Token grid of the full image (for the
            relative-position tables of a global layer).
        qkv_bias (bool): Bias of the qkv projection. Defaults to True.
        use_rel_pos (bool): Decomposed relative positions. Defaults to True.
        drop_path_rate (float): Stochastic depth. Defaults to 0.
        drop_rate (float): Dropout after the MLP. Defaults to 0.
        norm_eps (float): LayerNorm epsilon. Defaults to 1e-6.
        heads_per_chunk (int, optional): See :class:`RelPosAttention`.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        window_size: int,
        input_size: Tuple[int, int],
        qkv_bias: bool = True,
        use_rel_pos: bool = True,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        norm_eps: float = 1e-6,
        heads_per_chunk: Optional[int] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.window_size = window_size
        self.ln1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = RelPosAttention(
            embed_dims,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=(window_size, window_size) if window_size > 0 else input_size,
            heads_per_chunk=heads_per_chunk,
        )
        self.ln2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=2,
            ffn_drop=drop_rate,
            dropout_layer=dict(type='DropPath', drop_prob=drop_path_rate),
            act_cfg=dict(type='GELU'),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer to tokens ``(B, H, W, C)``; returns the same shape."""
        shortcut = x
        x = self.ln1(x)
        if self.window_size > 0:
            hw = (x.shape[1], x.shape[2])
            x, padded_hw = window_partition(x, self.window_size)
            x = self.attn.attend(x)
            # the output projection is per token: apply it after dropping the padding
            x = self.attn.proj(window_unpartition(x, self.window_size, padded_hw, hw))
        else:
            x = self.attn(x)
        x = shortcut + x
        return self.ffn(self.ln2(x), identity=x)


@MODELS.register_module()
class SAMImageEncoder(BaseModule):
    """The image encoder of Segment Anything, as a headless mmpretrain backbone.

    Args:
        arch (str | dict): ``'base'``, ``'large'``, ``'huge'`` (or ``'b'``, ``'l'``,
            ``'h'``), or a dict with ``embed_dims``, ``num_layers``, ``num_heads``,
            ``feedforward_channels`` and ``global_attn_indexes``. Defaults to ``'base'``.
        img_size (int): Side of the (padded) input the position embeddings are made
            for. Other input sizes interpolate them. Defaults to 1024.
        patch_size (int): Patch side. Defaults to 16.
        in_channels (int): Input channels. Defaults to 3.
        out_channels (int): Channels of the neck; 0 disables the neck. Defaults to 256.
        out_indices (int | Sequence[int]): Layers whose output is returned (negative
            indices count from the end). Defaults to -1.
        out_type (str): ``'raw'``/``'featmap'`` for ``(B, C, h, w)`` maps, or
            ``'avg_featmap'`` for ``(B, C)``. Defaults to ``'raw'``.
        window_size (int): Window side of the non-global layers. Defaults to 14.
        use_abs_pos (bool): Absolute position embedding. Defaults to True.
        use_rel_pos (bool): Decomposed relative positions. Defaults to True.
        qkv_bias (bool): Bias of the qkv projections. Defaults to True.
        drop_rate (float): Dropout rate. Defaults to 0.
        drop_path_rate (float): Stochastic depth, linearly increasing. Defaults to 0.
        norm_eps (float): LayerNorm epsilon. Defaults to 1e-6.
        frozen_stages (int): Freeze the patch embedding and the first
            ``frozen_stages`` layers (and the neck when all are frozen); -1 freezes
            nothing. Defaults to -1.
        interpolate_mode (str): Mode for resizing position embeddings.
            Defaults to ``'bicubic'``.
        heads_per_chunk (int, optional): Heads attended at a time in global
            layers, to bound memory (no effect on results). Defaults to None.
        autocast_dtype (str | torch.dtype, optional): Run the forward under
            ``torch.autocast`` in ``'bfloat16'`` (CPU or CUDA) or ``'float16'`` (CUDA);
            outputs are returned in float32. Changes results slightly. Defaults to None
            (plain float32).
        with_cp (bool): Gradient checkpointing of each transformer layer while training
            with gradients (recomputes the layer in the backward pass instead of keeping
            its activations: less memory for ViT-L/H fine-tuning, same results).
            Defaults to False.
        init_cfg (dict, optional): Initialization config.

    Shape:
        Input ``(B, in_channels, H, W)``; output a tuple with one map per
        ``out_indices`` entry of shape ``(B, out_channels, H / 16, W / 16)``.
    """

    arch_zoo: Dict[str, ArchSettings] = {
        **dict.fromkeys(
            ['b', 'base'],
            dict(
                embed_dims=768,
                num_layers=12,
                num_heads=12,
                feedforward_channels=3072,
                global_attn_indexes=[2, 5, 8, 11],
            ),
        ),
        **dict.fromkeys(
            ['l', 'large'],
            dict(
                embed_dims=1024,
                num_layers=24,
                num_heads=16,
                feedforward_channels=4096,
                global_attn_indexes=[5, 11, 17, 23],
            ),
        ),
        **dict.fromkeys(
            ['h', 'huge'],
            dict(
                embed_dims=1280,
                num_layers=32,
                num_heads=16,
                feedforward_channels=5120,
                global_attn_indexes=[7, 15, 23, 31],
            ),
        ),
    }
    OUT_TYPES = ('raw', 'featmap', 'avg_featmap')

    def __init__(
        self,
        arch: Union[str, ArchSettings] = 'base',
        img_size: int = 1024,
        patch_size: int = 16,
        in_channels: int = 3,
        out_channels: int = 256,
        out_indices: Union[int, Sequence[int]] = -1,
        out_type: str = 'raw',
        window_size: int = 14,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        frozen_stages: int = -1,
        interpolate_mode: str = 'bicubic',
        heads_per_chunk: Optional[int] = None,
        autocast_dtype: Optional[Union[str, torch.dtype]] = None,
        with_cp: bool = False,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.autocast_dtype = parse_autocast_dtype(autocast_dtype)
        self.with_cp = bool(with_cp)
        self.arch_settings = self._parse_arch(arch)
        self.embed_dims = int(self.arch_settings['embed_dims'])
        self.num_layers = int(self.arch_settings['num_layers'])
        self.global_attn_indexes = [
            i % self.num_layers for i in self.arch_settings.get('global_attn_indexes', [])
        ]
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got {out_type!r}')
        self.out_type = out_type
        self.img_size = int(img_size)
        self.patch_size = int(patch_size)
        if self.img_size % self.patch_size != 0:
            raise ValueError(
                f'img_size ({img_size}) must be a multiple of patch_size ({patch_size})'
            )
        self.patch_resolution = (self.img_size // self.patch_size,) * 2
        self.interpolate_mode = interpolate_mode

        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(
            in_channels, self.embed_dims, kernel_size=patch_size, stride=patch_size
        )
        self.use_abs_pos = use_abs_pos
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, *self.patch_resolution, self.embed_dims))
            self.drop_after_pos = nn.Dropout(p=drop_rate)
        else:
            self.pos_embed = None

        out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        self.out_indices = []
        for index in out_indices:
            resolved = index + self.num_layers if index < 0 else index
            if not 0 <= resolved < self.num_layers:
                raise ValueError(
                    f'out_indices entry {index} is out of range for {self.num_layers} layers'
                )
            self.out_indices.append(resolved)

        dpr = [drop_path_rate * i / max(self.num_layers - 1, 1) for i in range(self.num_layers)]
        self.layers = nn.ModuleList(
            SAMEncoderLayer(
                embed_dims=self.embed_dims,
                num_heads=int(self.arch_settings['num_heads']),
                feedforward_channels=int(self.arch_settings['feedforward_channels']),
                window_size=0 if i in self.global_attn_indexes else window_size,
                input_size=self.patch_resolution,
                qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos,
                drop_path_rate=dpr[i],
                drop_rate=drop_rate,
                norm_eps=norm_eps,
                heads_per_chunk=heads_per_chunk,
            )
            for i in range(self.num_layers)
        )

        self.out_channels = out_channels
        if out_channels > 0:
            self.channel_reduction = nn.Sequential(
                nn.Conv2d(self.embed_dims, out_channels, kernel_size=1, bias=False),
                LayerNorm2d(out_channels, eps=1e-6),
                nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
                LayerNorm2d(out_channels, eps=1e-6),
            )

        self._register_load_state_dict_pre_hook(self._resize_position_tables)
        self.frozen_stages = frozen_stages
        if frozen_stages > 0:
            self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, ArchSettings]) -> ArchSettings:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(
                    f'arch must be one of {sorted(set(cls.arch_zoo))} or a dict, got {arch!r}'
                )
            return dict(cls.arch_zoo[key])
        required = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
        if not isinstance(arch, dict) or not required <= set(arch):
            raise ValueError(f'a custom arch must be a dict with the keys {sorted(required)}')
        return dict(arch)

    def init_weights(self) -> None:
        """Initialize as mmpretrain does; a ``Pretrained`` init_cfg loads weights instead."""
        super().init_weights()
        pretrained = isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained'
        if not pretrained and self.pos_embed is not None:
            trunc_normal_(self.pos_embed, std=0.02)

    def _freeze_stages(self) -> None:
        frozen = [self.patch_embed] + list(self.layers[: self.frozen_stages])
        if self.frozen_stages >= self.num_layers and self.out_channels > 0:
            frozen.append(self.channel_reduction)
        if self.pos_embed is not None:
            self.pos_embed.requires_grad = False
            self.drop_after_pos.eval()
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'SAMImageEncoder':
        """Switch mode, keeping frozen stages in eval mode."""
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Depth of a parameter, for layer-wise learning-rate decay.

        Follows mmpretrain's ``VisionTransformer.get_layer_depth`` (which
        ``LearningRateDecayOptimWrapperConstructor`` calls): the patch embedding and the
        position embedding are depth 0, layer ``i`` is depth ``i + 1``, and the neck and
        every parameter outside the encoder (the decoder) get the last depth (no decay).

        Args:
            param_name (str): Parameter name, e.g. ``'backbone.layers.3.attn.qkv.weight'``.
            prefix (str): Prefix of the encoder's parameters. Defaults to ``''``.

        Returns:
            tuple[int, int]: ``(depth, num_layers + 2)``.
        """
        num_layers = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix) :]
        if name == 'pos_embed' or name.startswith('patch_embed'):
            depth = 0
        elif name.startswith('layers.'):
            depth = int(name.split('.')[1]) + 1
        else:
            depth = num_layers - 1
        return depth, num_layers

    def _resize_position_tables(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Resample position tables of a checkpoint made for another input size."""
        logger = MMLogger.get_current_instance()
        own = self.state_dict()
        for name, current in own.items():
            if name != 'pos_embed' and 'rel_pos_' not in name:
                continue
            key = prefix + name
            if key not in state_dict or state_dict[key].shape == current.shape:
                continue
            loaded = state_dict[key]
            if name == 'pos_embed' and loaded.dim() == 4:
                state_dict[key] = resize_abs_pos_embed(
                    loaded, tuple(current.shape[1:3]), self.interpolate_mode
                )
            elif loaded.dim() == 2 and loaded.shape[1] == current.shape[1]:
                state_dict[key] = resize_rel_pos(loaded.float(), current.shape[0]).to(loaded.dtype)
            else:
                continue
            logger.info(f'Resized {key} from {tuple(loaded.shape)} to {tuple(current.shape)}')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Encode images.

        Args:
            x (Tensor): ``(B, C_in, H, W)`` normalized images.

        Returns:
            tuple[Tensor]: One ``(B, out_channels, H / 16, W / 16)`` map per
            ``out_indices`` entry (``(B, out_channels)`` for ``'avg_featmap'``).
        """
        if x.dim() != 4:
            raise ValueError(f'expected images of shape (B, C, H, W), got {tuple(x.shape)}')
        if self.autocast_dtype is None:
            return self._forward(x)
        with autocast_context(x.device, self.autocast_dtype):
            outs = self._forward(x)
        return tuple(out.float() for out in outs)

    def _forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.patch_embed.projection(x).permute(0, 2, 3, 1)  # (B, h, w, C)
        if self.pos_embed is not None:
            x = x + resize_abs_pos_embed(self.pos_embed, tuple(x.shape[1:3]), self.interpolate_mode)
            x = self.drop_after_pos(x)
        outs = []
        checkpointed = self.with_cp and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if checkpointed and any(p.requires_grad for p in layer.parameters()):
                x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
            if i in self.out_indices:
                feat = x.permute(0, 3, 1, 2)
                if self.out_channels > 0:
                    feat = self.channel_reduction(feat)
                if self.out_type == 'avg_featmap':
                    feat = feat.mean(dim=(2, 3))
                outs.append(feat)
        return tuple(outs)
