"""SAM's image encoder: mmpretrain's ``ViTSAM`` with a faster attention.

The modules, parameter names, position-table resizing hooks, frozen stages and
``get_layer_depth`` are mmpretrain's ``ViTSAM`` (so its published SAM backbone
checkpoints load unchanged; :mod:`mmsam.utils.checkpoint_keys` maps the official
``image_encoder.*`` names onto it). mmsam adds the speed path of the attention
(:mod:`mmsam.models.layers.rel_pos_attention`), gradient checkpointing and errors that
name the bad argument.
"""

from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint
from mmpretrain.models.backbones import ViTSAM
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS

from ..layers.rel_pos_attention import MAX_BIAS_ELEMENTS, encoder_layer_forward
from ..utils.arch_settings import arch_settings


@MODELS.register_module()
class SAMImageEncoder(ViTSAM):
    """The image encoder of Segment Anything, as a headless mmpretrain backbone.

    Args:
        arch (str | dict): ``'base'``, ``'large'``, ``'huge'`` (or ``'b'``, ``'l'``,
            ``'h'``), or a dict with ``embed_dims``, ``num_layers``, ``num_heads``,
            ``feedforward_channels`` and ``global_attn_indexes``. Defaults to ``'base'``.
        img_size (int): Side of the (padded) input the position embeddings are made
            for. Other input sizes interpolate them. Defaults to 1024.
        out_indices (int | Sequence[int]): Layers whose output is returned (negative
            indices count from the end). Defaults to -1.
        use_abs_pos (bool): Absolute position embedding. Defaults to True.
        norm_eps (float): LayerNorm epsilon. Defaults to 1e-6.
        frozen_stages (int): Freeze the patch embedding and the first
            ``frozen_stages`` layers (and the neck when all are frozen); -1 freezes
            nothing. Defaults to -1.
        fast_path (bool): Run the attention through
            :func:`mmsam.models.layers.rel_pos_attention.rel_pos_attend` (fused, bias
            in chunks) instead of mmpretrain's reference attention. Same results.
            Defaults to True.
        max_bias_elements (int): The bias budget of the fast attention: largest
            relative-position bias chunk, in elements (results do not depend on it).
            Defaults to ``2 ** 25`` (128 MB in fp32).
        with_cp (bool): Gradient checkpointing of each transformer layer while training
            with gradients (recomputes the layer in the backward pass instead of keeping
            its activations: less memory for ViT-L/H fine-tuning, same results).
            Defaults to False.
        out_interm (bool): Also return the output of the first global-attention layer
            as a last ``(B, embed_dims, H / 16, W / 16)`` map (the early feature SAM-HQ's
            decoder reads; :class:`mmsam.models.SAM` sets it when its decoder asks).
            Defaults to False.
        **kwargs: ``ViTSAM``'s other arguments, with its defaults: ``patch_size`` (16),
            ``in_channels`` (3), ``out_channels`` (256, the neck; 0 disables it),
            ``out_type`` (``'raw'``/``'featmap'`` maps or ``'avg_featmap'``),
            ``window_size`` (14), ``use_rel_pos`` (True), ``qkv_bias`` (True),
            ``drop_rate`` (0), ``drop_path_rate`` (0, linearly increasing),
            ``interpolate_mode`` (``'bicubic'``), ``init_cfg``.

    Mixed precision is set on :class:`mmsam.models.SAM` (``autocast_dtype``).

    Shape:
        Input ``(B, in_channels, H, W)``; output a tuple with one map per
        ``out_indices`` entry of shape ``(B, out_channels, H / 16, W / 16)``, then
        with ``out_interm`` the early feature ``(B, embed_dims, H / 16, W / 16)``.
    """

    def __init__(
        self,
        arch: Union[str, dict] = 'base',
        img_size: int = 1024,
        out_indices: Union[int, Sequence[int]] = -1,
        use_abs_pos: bool = True,
        norm_eps: float = 1e-6,
        frozen_stages: int = -1,
        fast_path: bool = True,
        max_bias_elements: int = MAX_BIAS_ELEMENTS,
        with_cp: bool = False,
        out_interm: bool = False,
        **kwargs,
    ) -> None:
        arch = self._parse_arch(arch)
        out_type = kwargs.get('out_type', 'raw')
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {sorted(self.OUT_TYPES)}, got {out_type!r}')
        patch_size = kwargs.setdefault('patch_size', 16)
        if int(img_size) % int(patch_size) != 0:
            raise ValueError(
                f'img_size ({img_size}) must be a multiple of patch_size ({patch_size})'
            )
        if max_bias_elements < 1:
            raise ValueError(f'max_bias_elements must be positive, got {max_bias_elements}')
        num_layers = int(arch['num_layers'])
        indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        for index in indices:
            if not -num_layers <= index < num_layers:
                raise ValueError(
                    f'out_indices entry {index} is out of range for {num_layers} layers'
                )
        norm_cfg = dict(type='LN', eps=norm_eps)
        # frozen stages are applied below, once the missing position embedding is set
        super().__init__(
            arch,
            img_size,
            out_indices=indices,
            use_abs_pos=use_abs_pos,
            norm_cfg=norm_cfg,
            frozen_stages=-1,
            **kwargs,
        )
        self.img_size = int(img_size)  # ViTSAM keeps a tuple; SAM reads one side
        if not use_abs_pos:
            # ViTSAM leaves these unset without an absolute position embedding
            self.pos_embed = None
            self.drop_after_pos = nn.Dropout(p=kwargs.get('drop_rate', 0.0))
        self.fast_path = bool(fast_path)
        self.max_bias_elements = int(max_bias_elements)
        self.with_cp = bool(with_cp)
        self.out_interm = bool(out_interm)
        if self.out_interm and not self.global_attn_indexes:
            raise ValueError('out_interm needs a global-attention layer (global_attn_indexes)')
        # ViTSAM freezes layers 1..frozen_stages and the neck at exactly num_layers
        self.frozen_stages = min(frozen_stages, self.num_layers)
        if frozen_stages > 0:
            self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        """The arch settings, with ``global_attn_indexes`` made non-negative."""
        required = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')
        arch = arch_settings(arch, cls.arch_zoo, required)
        num_layers = int(arch['num_layers'])
        arch['global_attn_indexes'] = [i % num_layers for i in arch.get('global_attn_indexes', [])]
        return arch

    def train(self, mode: bool = True) -> 'SAMImageEncoder':
        """Switch mode, keeping frozen stages in eval mode."""
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self._freeze_stages()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Encode images.

        Args:
            x (Tensor): ``(B, C_in, H, W)`` normalized images.

        Returns:
            tuple[Tensor]: One ``(B, out_channels, H / 16, W / 16)`` map per
            ``out_indices`` entry (``(B, out_channels)`` for ``'avg_featmap'``); with
            ``out_interm``, then the first global-attention layer's output
            ``(B, embed_dims, H / 16, W / 16)``.
        """
        if x.dim() != 4:
            raise ValueError(f'expected images of shape (B, C, H, W), got {tuple(x.shape)}')
        b = x.shape[0]
        x, hw = self.patch_embed(x)
        x = x.view(b, *hw, self.embed_dims)
        if self.pos_embed is not None:
            pos_embed = resize_pos_embed(
                self.pos_embed.flatten(1, 2),
                self.patch_resolution,
                hw,
                mode=self.interpolate_mode,
                num_extra_tokens=0,
            )
            x = self.drop_after_pos(x + pos_embed.view(1, *hw, self.embed_dims))
        outs = []
        checkpointed = self.with_cp and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if checkpointed and any(p.requires_grad for p in layer.parameters()):
                x = torch.utils.checkpoint.checkpoint(
                    self._run_layer, layer, x, use_reentrant=False
                )
            else:
                x = self._run_layer(layer, x)
            if i in self.out_indices:
                feat = x.permute(0, 3, 1, 2)
                if self.out_channels > 0:
                    feat = self.channel_reduction(feat)
                outs.append(self._format_output(feat))
            if self.out_interm and i == min(self.global_attn_indexes):
                interm = x.permute(0, 3, 1, 2)
        if self.out_interm:
            outs.append(interm)
        return tuple(outs)

    def _run_layer(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.fast_path:
            return encoder_layer_forward(layer, x, self.max_bias_elements)
        return layer(x)
