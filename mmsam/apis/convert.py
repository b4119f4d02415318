"""Convert SAM checkpoints of any known layout into mmsam checkpoints.

Sources: the official ``segment_anything`` files (``sam_vit_b_01ec64.pth`` and
siblings: a bare state dict), Hugging Face ``facebook/sam-vit-*`` (``.bin`` or
``.safetensors``), mmpretrain ``ViTSAM`` backbones, and mmsam's own files. The
layout and the encoder's size are read from the keys and shapes; the result is
checked against the model it is meant for (every source key used, every model key
filled, every shape equal) before it is written, whole, with
:func:`mmsam.utils.save_checkpoint`.
"""

import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch
from mmengine.config import Config

from ..utils.checkpoint_io import CheckpointLoadError, load_state_dict_file, save_checkpoint
from ..utils.checkpoint_keys import KeyMapError, infer_encoder_arch, is_sam_hq, to_mmsam_layout
from ..utils.checkpoint_loader import prepare_state_dict
from ..version import __version__
from .model_zoo import arch_overrides, build_model, get_model_info

#: metafile names of the full and headless models by encoder size (``tinyvit-*``: MobileSAM)
FULL_MODEL_NAMES = {
    **{s: f'sam_vit-{s}-p16_3rdparty_sa1b-1024px' for s in ('base', 'large', 'huge')},
    'tinyvit-5m': 'mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px',
    **{
        f'efficientvit-{s}': f'efficientvit-sam_{s}_3rdparty_sa1b-{px}px'
        for s, px in (('l0', 512), ('l1', 512), ('l2', 512), ('xl0', 1024), ('xl1', 1024))
    },
}
#: SAM-HQ's names by encoder size (files whose decoder has ``mask_decoder.hf_token``)
HQ_MODEL_NAMES = {
    **{s: f'sam-hq_vit-{s}-p16_3rdparty_hqseg44k-1024px' for s in ('base', 'large', 'huge')},
    'tinyvit-5m': 'light-hq-sam_tinyvit-5m_3rdparty_hqseg44k-1024px',
}
HEADLESS_MODEL_NAMES = {
    **{s: f'vit-{s}-p16_sam-pre_3rdparty_sa1b-1024px' for s in ('base', 'large', 'huge')},
    'tinyvit-5m': 'tinyvit-5m_mobile-sam-pre_3rdparty_sa1b-1024px',
}


def _zoo_key(arch_info: dict) -> str:
    """The key of :data:`FULL_MODEL_NAMES` for an encoder (``'base'``, ``'tinyvit-5m'``)."""
    if arch_info.get('encoder') in ('tinyvit', 'efficientvit'):
        return f'{arch_info["encoder"]}-{arch_info["arch"]}'
    return arch_info['arch']


@dataclass
class ConversionReport:
    """What :func:`convert_checkpoint` read and wrote.

    Attributes:
        src: the source file.
        dst: the written file.
        layout: the source layout (``official``, ``hf``, ``mmpretrain``, ``mmsam``).
        arch: ``base``, ``large``, ``huge`` or ``custom``.
        arch_settings: the encoder's ``embed_dims``, ``num_layers``, ``num_heads``,
            ``feedforward_channels``, ``global_attn_indexes``.
        img_size: input side the position tables are made for.
        window_size: window side of the non-global encoder layers.
        backbone_only: whether only the image encoder was written.
        model_name: the matching metafile name (``None`` for custom sizes).
        num_source_keys: tensors in the source.
        num_written: tensors written.
        num_parameters: elements written.
        ignored_keys: source keys left out on purpose (normalization buffers, and the
            prompt encoder and mask decoder with ``backbone_only``).
    """

    src: str
    dst: str
    layout: str
    arch: str
    arch_settings: Dict[str, Any]
    img_size: int
    window_size: int
    backbone_only: bool
    model_name: Any
    num_source_keys: int
    num_written: int
    num_parameters: int
    ignored_keys: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few human-readable lines."""
        s = self.arch_settings
        what = 'image encoder (mmpretrain ViTSAM layout)' if self.backbone_only else 'full SAM'
        if 'channels' in s:  # MobileSAM's TinyViT
            what = 'image encoder (SAMTinyViT)' if self.backbone_only else 'full MobileSAM'
            model = (
                f'model: {self.arch} TinyViT encoder: channels {s["channels"]}, depths '
                f'{s["depths"]}, heads {s["num_heads"][1:]}, windows {s["window_sizes"][1:]}'
            )
        elif 'widths' in s:  # EfficientViT-SAM
            what = 'full EfficientViT-SAM'
            model = (
                f'model: EfficientViT-SAM {self.arch.upper()} encoder: widths {s["widths"]}, '
                f'depths {s["depths"]}, {s["input_size"]}px input'
            )
        else:
            model = (
                f'model: {self.arch} ViT encoder: {s["embed_dims"]} wide, {s["num_layers"]} '
                f'layers, {s["num_heads"]} heads, global attention in layers '
                f'{s["global_attn_indexes"]}, {self.img_size}px, window {self.window_size}'
            )
        if self.model_name in HQ_MODEL_NAMES.values():
            what = 'full Light HQ-SAM' if 'channels' in s else 'full SAM-HQ'
        lines = [
            f'source: {self.src} ({self.layout} layout, {self.num_source_keys} tensors)',
            model,
            f'wrote: {self.dst}: {what}, {self.num_written} tensors, '
            f'{self.num_parameters / 1e6:.2f}M parameters; all source keys used, '
            'all model keys filled',
        ]
        if self.ignored_keys:
            groups: Dict[str, int] = {}
            for key in self.ignored_keys:
                group = key.split('.', 1)[0] + ('.*' if '.' in key else '')
                groups[group] = groups.get(group, 0) + 1
            shown = ', '.join(f'{g} ({n} tensors)' if n > 1 else g for g, n in groups.items())
            lines.append(f'left out on purpose: {shown}')
        if self.model_name:
            lines.append(
                f'load it with: mmsam.get_model({self.model_name!r}, pretrained={self.dst!r})'
            )
        return '\n'.join(lines)


def _model_names(backbone_only: bool, hq: bool) -> Dict[str, str]:
    if backbone_only:
        return HEADLESS_MODEL_NAMES
    return HQ_MODEL_NAMES if hq else FULL_MODEL_NAMES


def _target_state(
    arch_info: dict, backbone_only: bool, hq: bool = False
) -> Dict[str, torch.Tensor]:
    """Keys and shapes of the model a converted checkpoint is for (built on ``meta``)."""
    names = _model_names(backbone_only, hq)
    if arch_info.get('encoder') == 'efficientvit':
        config = Config.fromfile(get_model_info(names[_zoo_key(arch_info)])['Config'])
    elif arch_info.get('encoder') == 'tinyvit':
        config = Config.fromfile(get_model_info(names['tinyvit-5m'])['Config'])
        if arch_info['arch'] != '5m':
            arch = arch_info['arch']
            if arch not in ('11m', '21m'):
                arch = dict(_delete_=True, **arch_info['arch_settings'])
            config.merge_from_dict({'model': dict(backbone=dict(arch=arch))})
    else:
        config = Config.fromfile(get_model_info(names['base'])['Config'])
        config.merge_from_dict({'model': arch_overrides(arch_info, headless=backbone_only)})
    if hq and not backbone_only:  # SAM-HQ's decoder reads the encoder's early feature
        s = arch_info['arch_settings']
        interm = s['channels'][2] if 'channels' in s else s['embed_dims']
        config.merge_from_dict({'model': dict(mask_decoder=dict(interm_dims=interm))})
    with torch.device('meta'):
        model = build_model(config)
    return model.state_dict()


def convert_checkpoint(
    src: str, dst: str, layout: str = 'auto', backbone_only: bool = False
) -> ConversionReport:
    """Convert a SAM checkpoint to an mmsam checkpoint.

    Args:
        src: the source (``.pth``, ``.pt``, ``.bin``, ``.safetensors``).
        dst: the ``.pth`` file to write (replaced atomically; its folder is created).
        layout: ``'auto'`` (read from the keys) or ``'official'``, ``'hf'``,
            ``'mmpretrain'``, ``'mmsam'`` (then the keys must fit it).
        backbone_only: write the image encoder alone as ``backbone.*`` in mmpretrain's
            ``ViTSAM`` layout (what the headless ``vit-*_sam-pre_*`` models load);
            otherwise the full model (``backbone.*``, ``prompt_encoder.*``,
            ``mask_decoder.*``).

    Returns:
        ConversionReport: what was read and written (``report.summary()`` prints well).

    Raises:
        FileNotFoundError: if ``src`` does not exist.
        CheckpointLoadError: if ``src`` is not a readable checkpoint, not SAM, not in ``layout``,
            or lacks the prompt encoder / mask decoder for a full model.
        CheckpointMismatchError: if keys are left over or missing, or shapes differ.
    """
    source = load_state_dict_file(src)
    num_source = len(source)
    try:
        state, src_layout, ignored = to_mmsam_layout(source, layout)
        arch_info = infer_encoder_arch(state)
    except (KeyMapError, ValueError) as e:
        raise CheckpointLoadError(f'checkpoint {src!r}: {e}') from e
    del source
    if backbone_only and arch_info.get('encoder') == 'efficientvit':
        raise CheckpointLoadError(
            f'checkpoint {src!r} is an EfficientViT-SAM: mmsam has no headless model of it; '
            'convert the full model (without backbone_only / --backbone-only)'
        )
    if not backbone_only and not any(
        k.startswith(('prompt_encoder.', 'mask_decoder.')) for k in state
    ):
        raise CheckpointLoadError(
            f'checkpoint {src!r} holds an image encoder only ({src_layout} layout); '
            'convert it with backbone_only=True (--backbone-only)'
        )
    hq = is_sam_hq(state)
    # the same preparation as every load: heads dropped for a headless target, every
    # key and shape checked (no resampled position tables: the file is written as is)
    state, info = prepare_state_dict(
        state, _target_state(arch_info, backbone_only, hq), src, allow_resize=False
    )
    ignored = ignored + info['ignored']
    model_name = _model_names(backbone_only, hq).get(_zoo_key(arch_info))
    meta = dict(
        arch=arch_info['arch'],
        arch_settings=arch_info['arch_settings'],
        img_size=arch_info['img_size'],
        patch_size=arch_info['patch_size'],
        window_size=arch_info['window_size'],
        model_type='ImageClassifier' if backbone_only else 'SAM',
        model_name=model_name,
        source_layout=src_layout,
        source_file=osp.basename(src),
        mmsam_version=__version__,
    )
    save_checkpoint(state, dst, meta=meta)
    return ConversionReport(
        src=src,
        dst=dst,
        layout=src_layout,
        arch=arch_info['arch'],
        arch_settings=arch_info['arch_settings'],
        img_size=arch_info['img_size'],
        window_size=arch_info['window_size'],
        backbone_only=backbone_only,
        model_name=model_name,
        num_source_keys=num_source,
        num_written=len(state),
        num_parameters=sum(v.numel() for v in state.values()),
        ignored_keys=ignored,
    )
