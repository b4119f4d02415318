"""State-dict key maps between the official SAM layout and mmsam's.

This is the one place that knows how parameter names correspond; the
in-memory loader and ``tools/model_converters/sam2mmsam.py`` both use it.

* official: ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``
  (``segment_anything.modeling.Sam``);
* mmsam: ``backbone.*`` in mmpretrain's ``ViTSAM`` layout, ``prompt_encoder.*``
  and ``mask_decoder.*`` unchanged.
"""

import re
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch

# official image-encoder name <-> mmpretrain ViTSAM name, one pair per parameter group.
# ``{i}`` is a block index, ``{n}`` a neck layer (0-3); a name ending in ``.`` is a
# module prefix (``weight``/``bias`` follow), any other name is a whole key.
ENCODER_NAME_PAIRS: List[Tuple[str, str]] = [
    ('patch_embed.proj.', 'patch_embed.projection.'),
    ('pos_embed', 'pos_embed'),
    ('blocks.{i}.norm1.', 'layers.{i}.ln1.'),
    ('blocks.{i}.norm2.', 'layers.{i}.ln2.'),
    ('blocks.{i}.attn.qkv.', 'layers.{i}.attn.qkv.'),
    ('blocks.{i}.attn.proj.', 'layers.{i}.attn.proj.'),
    ('blocks.{i}.attn.rel_pos_h', 'layers.{i}.attn.rel_pos_h'),
    ('blocks.{i}.attn.rel_pos_w', 'layers.{i}.attn.rel_pos_w'),
    ('blocks.{i}.mlp.lin1.', 'layers.{i}.ffn.layers.0.0.'),
    ('blocks.{i}.mlp.lin2.', 'layers.{i}.ffn.layers.1.'),
    ('neck.{n}.', 'channel_reduction.{n}.'),
]

# MobileSAM's TinyViT (``mobile_sam.modeling.TinyViT``) <-> mmsam's ``SAMTinyViT``, whose
# blocks are mmpretrain's TinyViT blocks: ``layers`` -> ``stages``, ``c``/``bn`` (conv and
# batch norm of each ``Conv2d_BN``) -> ``conv2d``/``bn2d``; the neck is shared with the ViT.
# ``{j}`` is a block index, ``{k}`` the 1-3 of ``conv1``..``conv3``.
TINYVIT_NAME_PAIRS: List[Tuple[str, str]] = [
    ('patch_embed.seq.{i}.c.', 'patch_embed.seq.{i}.conv2d.'),
    ('patch_embed.seq.{i}.bn.', 'patch_embed.seq.{i}.bn2d.'),
    ('layers.{i}.blocks.{j}.conv{k}.c.', 'stages.{i}.blocks.{j}.conv{k}.conv2d.'),
    ('layers.{i}.blocks.{j}.conv{k}.bn.', 'stages.{i}.blocks.{j}.conv{k}.bn2d.'),
    ('layers.{i}.blocks.{j}.local_conv.c.', 'stages.{i}.blocks.{j}.local_conv.conv2d.'),
    ('layers.{i}.blocks.{j}.local_conv.bn.', 'stages.{i}.blocks.{j}.local_conv.bn2d.'),
    ('layers.{i}.blocks.{j}.attn.', 'stages.{i}.blocks.{j}.attn.'),
    ('layers.{i}.blocks.{j}.mlp.', 'stages.{i}.blocks.{j}.mlp.'),
    ('layers.{i}.downsample.conv{k}.c.', 'stages.{i}.downsample.conv{k}.conv2d.'),
    ('layers.{i}.downsample.conv{k}.bn.', 'stages.{i}.downsample.conv{k}.bn2d.'),
]

_PLACEHOLDERS = {
    '{i}': r'(?P<i>\d+)',
    '{j}': r'(?P<j>\d+)',
    '{k}': r'(?P<k>[1-3])',
    '{n}': r'(?P<n>[0-3])',
}
_PLACEHOLDER = re.compile(r'\{([ijkn])\}')


def _name_rule(src: str, dst: str) -> Tuple[str, str]:
    """A ``(pattern, replacement)`` rule that renames ``src`` (a template) to ``dst``."""
    parts = re.split(r'(\{[ijkn]\})', src)
    pattern = '^' + ''.join(_PLACEHOLDERS.get(part, re.escape(part)) for part in parts)
    if not src.endswith('.'):
        pattern += '$'
    return pattern, _PLACEHOLDER.sub(lambda m: rf'\g<{m[1]}>', dst)


# (official image-encoder key pattern, mmsam replacement) and the reverse, for SAM's ViT
# (mmpretrain ViTSAM names) and MobileSAM's TinyViT (mmpretrain TinyViT names)
ENCODER_KEY_RULES: List[Tuple[str, str]] = [
    _name_rule(o, m) for o, m in ENCODER_NAME_PAIRS + TINYVIT_NAME_PAIRS
]
_REVERSE_ENCODER_KEY_RULES: List[Tuple[str, str]] = [
    _name_rule(m, o) for o, m in ENCODER_NAME_PAIRS + TINYVIT_NAME_PAIRS
]

OFFICIAL_PREFIXES = ('image_encoder.', 'prompt_encoder.', 'mask_decoder.')
MMSAM_PREFIXES = ('backbone.', 'prompt_encoder.', 'mask_decoder.')


class KeyMapError(KeyError):
    """A key that no rule of the map knows."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ''


def _apply_rules(key: str, rules: List[Tuple[str, str]], what: str) -> str:
    for pattern, replacement in rules:
        new_key, count = re.subn(pattern, replacement, key)
        if count:
            return new_key
    raise KeyMapError(f'unknown {what} key {key!r}')


# EfficientViT-SAM's encoder (``efficientvit.models.efficientvit.sam``) <-> mmsam's
# ``SAMEfficientViT``: the reference's ``op_list`` wrappers go, the neck's parts get names,
# the final LayerNorm2d moves into the neck, and each ``ConvLayer``'s batch norm ``norm``
# is mmcv ``ConvModule``'s ``bn`` (the tail rule below).
EFFICIENTVIT_NAME_PAIRS: List[Tuple[str, str]] = [
    ('backbone.stages.{i}.op_list.{j}.', 'stages.{i}.{j}.'),
    ('neck.input_ops.{i}.op_list.0.', 'neck.lateral_convs.{i}.'),
    ('neck.middle.op_list.{j}.', 'neck.blocks.{j}.'),
    ('neck.output_ops.0.op_list.0.', 'neck.out_conv.'),
    ('norm.', 'neck.norm.'),
]
_EFFICIENTVIT_OFFICIAL = re.compile(
    r'^(backbone\.stages\.|neck\.(input_ops|middle|output_ops)\.|norm\.)'
)
_EFFICIENTVIT_MMSAM = re.compile(
    r'^(stages\.\d+\.\d+\.|neck\.(lateral_convs|blocks|out_conv|norm)\.)'
)
_BN_TAIL = r'(weight|bias|running_mean|running_var|num_batches_tracked)$'


def _efficientvit_key(key: str, to_official: bool) -> str:
    """Map one EfficientViT-SAM image-encoder key (no prefix) between the layouts."""
    if to_official:
        rules, src, dst = _REVERSE_EFFICIENTVIT_KEY_RULES, 'bn.', 'norm.'
    else:
        rules, src, dst = _EFFICIENTVIT_KEY_RULES, 'norm.', 'bn.'
    new_key = _apply_rules(key, rules, 'EfficientViT-SAM image-encoder')
    if new_key.startswith(('norm.', 'neck.norm.')):  # the final LayerNorm2d
        return new_key
    return re.sub(r'(^|\.)' + re.escape(src) + _BN_TAIL, r'\g<1>' + dst + r'\2', new_key)


_EFFICIENTVIT_KEY_RULES = [_name_rule(o, m) for o, m in EFFICIENTVIT_NAME_PAIRS]
_REVERSE_EFFICIENTVIT_KEY_RULES = [_name_rule(m, o) for o, m in EFFICIENTVIT_NAME_PAIRS]


def official_encoder_key_to_mmsam(key: str) -> str:
    """``blocks.0.mlp.lin1.weight`` -> ``layers.0.ffn.layers.0.0.weight`` (no prefix)."""
    if _EFFICIENTVIT_OFFICIAL.match(key):
        return _efficientvit_key(key, to_official=False)
    return _apply_rules(key, ENCODER_KEY_RULES, 'official image-encoder')


def mmsam_encoder_key_to_official(key: str) -> str:
    """``layers.0.ffn.layers.0.0.weight`` -> ``blocks.0.mlp.lin1.weight`` (no prefix)."""
    if _EFFICIENTVIT_MMSAM.match(key):
        return _efficientvit_key(key, to_official=True)
    return _apply_rules(key, _REVERSE_ENCODER_KEY_RULES, 'mmpretrain ViTSAM')


def _full_key(key: str, to_official: bool) -> str:
    """Map one full-model key between the official and mmsam layouts: the image
    encoder's keys are renamed, the prompt encoder's and mask decoder's are kept."""
    if to_official:
        src, dst, encoder_fn = 'backbone.', 'image_encoder.', mmsam_encoder_key_to_official
    else:
        src, dst, encoder_fn = 'image_encoder.', 'backbone.', official_encoder_key_to_mmsam
    if key.startswith(src):
        return dst + encoder_fn(key[len(src) :])
    if key.startswith(('prompt_encoder.', 'mask_decoder.')):
        return key
    what, prefixes = ('mmsam', MMSAM_PREFIXES) if to_official else ('official', OFFICIAL_PREFIXES)
    raise KeyMapError(f'unknown {what} SAM key {key!r} (expected one of {prefixes})')


def official_key_to_mmsam(key: str) -> str:
    """Map one key of an official SAM state dict to mmsam's full-model layout."""
    return _full_key(key, to_official=False)


def mmsam_key_to_official(key: str) -> str:
    """Map one key of an mmsam full-model state dict to the official layout."""
    return _full_key(key, to_official=True)


def _convert(
    state_dict: Mapping[str, torch.Tensor],
    fn: Callable[[str], str],
    allow_equal_duplicates: bool = False,
) -> 'OrderedDict':
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        try:
            new_key = fn(key)
        except KeyMapError:
            unknown.append(key)
            continue
        if new_key in out:
            same = (
                allow_equal_duplicates
                and out[new_key].shape == value.shape
                and torch.equal(out[new_key], value)
            )
            if not same:
                raise KeyMapError(f'two keys map to {new_key!r} (with different values)')
            continue
        out[new_key] = value
    if unknown:
        shown = ', '.join(unknown[:8]) + (
            f', ... ({len(unknown)} in all)' if len(unknown) > 8 else ''
        )
        raise KeyMapError(f'keys that are not part of SAM: {shown}')
    return out


def convert_official_to_mmsam(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict':
    """Convert a whole official SAM state dict to mmsam's layout (tensors are shared)."""
    return _convert(state_dict, official_key_to_mmsam)


def convert_mmsam_to_official(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict':
    """Convert a whole mmsam SAM state dict to the official layout (tensors are shared)."""
    return _convert(state_dict, mmsam_key_to_official)


# --------------------------------------------------------------------------------------
# Hugging Face transformers layout (``facebook/sam-vit-base`` and its siblings).
#
# ``transformers.SamModel`` keeps the official tensors and shapes (the image encoder's
# qkv stays fused, each point embedding is its own ``Embedding(1, 256)``) but renames
# modules: ``vision_encoder`` for ``image_encoder``, ``layer_norm*`` for ``norm*``, named
# neck / mask-embedding / upscaling layers for the official ``nn.Sequential`` indices,
# ``proj_in``/``layers.K``/``proj_out`` for the three-layer MLPs. The random-Fourier
# matrix is shared by the model and its prompt encoder, so a file holds it as
# ``shared_image_embedding.positional_embedding``,
# ``prompt_encoder.shared_embedding.positional_embedding`` or both.
# --------------------------------------------------------------------------------------

HF_PREFIXES = ('vision_encoder.', 'prompt_encoder.', 'mask_decoder.', 'shared_image_embedding.')


def _hf_layer_rules(prefix: str, official: str, layers: Mapping[str, int]) -> List[Tuple[str, str]]:
    """Rules for the layers that Hugging Face names inside an official ``nn.Sequential``:
    ``<prefix><name>.`` -> ``<official>.<index>.`` (``name`` may be a regex)."""
    return [(rf'^{prefix}{name}\.', f'{official}.{index}.') for name, index in layers.items()]


_HF_ENCODER_KEY_RULES: List[Tuple[str, str]] = [
    (r'^patch_embed\.projection\.', 'patch_embed.projection.'),
    (r'^pos_embed$', 'pos_embed'),
    (r'^layers\.(\d+)\.layer_norm1\.', r'layers.\1.ln1.'),
    (r'^layers\.(\d+)\.layer_norm2\.', r'layers.\1.ln2.'),
    (r'^layers\.(\d+)\.attn\.(qkv|proj)\.', r'layers.\1.attn.\2.'),
    (r'^layers\.(\d+)\.attn\.(rel_pos_h|rel_pos_w)$', r'layers.\1.attn.\2'),
    (r'^layers\.(\d+)\.mlp\.lin1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^layers\.(\d+)\.mlp\.lin2\.', r'layers.\1.ffn.layers.1.'),
    *_hf_layer_rules(
        r'neck\.', 'channel_reduction', dict(conv1=0, layer_norm1=1, conv2=2, layer_norm2=3)
    ),
]

_HF_PROMPT_KEY_RULES: List[Tuple[str, str]] = [
    (r'^shared_embedding\.positional_embedding$', 'pe_layer.positional_encoding_gaussian_matrix'),
    (r'^point_embed\.(\d+)\.weight$', r'point_embeddings.\1.weight'),
    (r'^(not_a_point_embed|no_mask_embed)\.weight$', r'\1.weight'),
    *_hf_layer_rules(
        r'mask_embed\.',
        'mask_downscaling',
        dict(conv1=0, layer_norm1=1, conv2=3, layer_norm2=4, conv3=6),
    ),
]

_HF_ATTN = r'(q_proj|k_proj|v_proj|out_proj)'
_HF_MLP = r'(output_hypernetworks_mlps\.\d+|iou_prediction_head)'
_HF_DECODER_KEY_RULES: List[Tuple[str, str]] = [
    (r'^(iou_token|mask_tokens)\.weight$', r'\1.weight'),
    (r'^transformer\.layers\.(\d+)\.layer_norm([1-4])\.', r'transformer.layers.\1.norm\2.'),
    (
        r'^transformer\.layers\.(\d+)\.(self_attn|cross_attn_token_to_image|'
        r'cross_attn_image_to_token)\.' + _HF_ATTN + r'\.',
        r'transformer.layers.\1.\2.\3.',
    ),
    (r'^transformer\.layers\.(\d+)\.mlp\.(lin1|lin2)\.', r'transformer.layers.\1.mlp.\2.'),
    (
        r'^transformer\.final_attn_token_to_image\.' + _HF_ATTN + r'\.',
        r'transformer.final_attn_token_to_image.\1.',
    ),
    (r'^transformer\.layer_norm_final_attn\.', 'transformer.norm_final_attn.'),
    # ``upsacle_layer_norm``: the spelling of early transformers releases
    *_hf_layer_rules(
        '',
        'output_upscaling',
        {'upscale_conv1': 0, '(upscale|upsacle)_layer_norm': 1, 'upscale_conv2': 3},
    ),
    (r'^' + _HF_MLP + r'\.proj_in\.', r'\1.layers.0.'),
]

_HF_MLP_HIDDEN = re.compile(r'^' + _HF_MLP + r'\.layers\.(\d+)\.(.+)$')
_HF_MLP_OUT = re.compile(r'^' + _HF_MLP + r'\.proj_out\.(.+)$')

#: SAM's MLP heads (hypernetworks, IoU head) have three linear layers.
SAM_MLP_DEPTH = 3


def _hf_decoder_key_to_mmsam(key: str, mlp_depths: Mapping[str, int]) -> str:
    match = _HF_MLP_HIDDEN.match(key)
    if match:  # HF's hidden layer K is the official layer K + 1
        return f'{match[1]}.layers.{int(match[2]) + 1}.{match[3]}'
    match = _HF_MLP_OUT.match(key)
    if match:
        depth = mlp_depths.get(match[1], SAM_MLP_DEPTH)
        return f'{match[1]}.layers.{depth - 1}.{match[2]}'
    return _apply_rules(key, _HF_DECODER_KEY_RULES, 'Hugging Face mask-decoder')


def hf_key_to_mmsam(key: str, mlp_depths: Optional[Mapping[str, int]] = None) -> str:
    """Map one key of a Hugging Face ``SamModel`` state dict to mmsam's layout.

    Args:
        key: e.g. ``vision_encoder.layers.0.layer_norm1.weight``.
        mlp_depths: linear layers of each decoder MLP by its HF prefix (e.g.
            ``iou_prediction_head``), to place ``proj_out``; SAM's 3 by default.

    Returns:
        e.g. ``backbone.layers.0.ln1.weight``.

    Raises:
        KeyMapError: if no rule knows the key.
    """
    if key.startswith('vision_encoder.'):
        rest = key[len('vision_encoder.') :]
        return 'backbone.' + _apply_rules(rest, _HF_ENCODER_KEY_RULES, 'Hugging Face vision')
    if key == 'shared_image_embedding.positional_embedding':
        return 'prompt_encoder.pe_layer.positional_encoding_gaussian_matrix'
    if key.startswith('prompt_encoder.'):
        rest = key[len('prompt_encoder.') :]
        return 'prompt_encoder.' + _apply_rules(rest, _HF_PROMPT_KEY_RULES, 'Hugging Face prompt')
    if key.startswith('mask_decoder.'):
        rest = key[len('mask_decoder.') :]
        return 'mask_decoder.' + _hf_decoder_key_to_mmsam(rest, mlp_depths or {})
    raise KeyMapError(f'unknown Hugging Face SAM key {key!r} (expected one of {HF_PREFIXES})')


def hf_mlp_depths(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, int]:
    """Linear layers per decoder MLP of an HF state dict (``proj_in``, hidden, ``proj_out``)."""
    hidden: Dict[str, set] = {}
    for key in state_dict:
        if not key.startswith('mask_decoder.'):
            continue
        rest = key[len('mask_decoder.') :]
        match = _HF_MLP_HIDDEN.match(rest)
        if match:
            hidden.setdefault(match[1], set()).add(int(match[2]))
        elif _HF_MLP_OUT.match(rest):
            hidden.setdefault(_HF_MLP_OUT.match(rest)[1], set())
    return {prefix: len(indices) + 2 for prefix, indices in hidden.items()}


def convert_hf_to_mmsam(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict':
    """Convert a Hugging Face ``SamModel`` state dict to mmsam's layout (tensors are shared).

    The positional matrix may be stored twice (tied); both copies must be equal.

    Raises:
        KeyMapError: for keys that are not part of SAM, or tied copies that differ.
    """
    depths = hf_mlp_depths(state_dict)
    return _convert(state_dict, lambda k: hf_key_to_mmsam(k, depths), allow_equal_duplicates=True)


# --------------------------------------------------------------------------------------
# Layout and size detection
# --------------------------------------------------------------------------------------

#: The layouts :func:`detect_layout` tells apart.
LAYOUTS = ('official', 'hf', 'mmsam', 'mmpretrain')

#: Buffers some official-style files carry that SAM does not load (the normalization
#: constants live in the data preprocessor).
IGNORED_KEYS = ('pixel_mean', 'pixel_std')

#: Prefixes of official keys that SAM never runs: the ImageNet classifier (final norm and
#: linear head) that MobileSAM's TinyViT keeps in its ``mobile_sam.pt``.
IGNORED_PREFIXES = ('image_encoder.norm_head.', 'image_encoder.head.')

_VITSAM_BARE = re.compile(
    r'^(patch_embed\.projection\.|pos_embed$|layers\.\d+\.|channel_reduction\.)'
)


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Tell which SAM layout a state dict is in, from its keys.

    Returns:
        ``'official'`` (``image_encoder.*``), ``'hf'`` (``vision_encoder.*`` and
        HF's decoder names), ``'mmsam'`` (``backbone.*`` with prompt encoder and mask
        decoder) or ``'mmpretrain'`` (a ``ViTSAM`` backbone alone, with or without the
        ``backbone.`` prefix).

    Raises:
        ValueError: if the keys fit none of them (naming a few of the keys).
    """
    keys = list(state_dict)
    if any(k.startswith('image_encoder.') for k in keys):
        return 'official'
    hf_markers = (
        'vision_encoder.',
        'shared_image_embedding.',
        'prompt_encoder.point_embed.',
        'prompt_encoder.mask_embed.',
        'mask_decoder.upscale_conv1.',
    )
    if any(k.startswith(hf_markers) for k in keys):
        return 'hf'
    has_backbone = any(k.startswith('backbone.') for k in keys)
    has_heads = any(k.startswith(('prompt_encoder.', 'mask_decoder.')) for k in keys)
    if has_backbone and has_heads:
        return 'mmsam'
    if has_backbone and any(_VITSAM_BARE.match(k[len('backbone.') :]) for k in keys):
        return 'mmpretrain'
    if (
        keys
        and any(k.startswith('layers.') for k in keys)
        and all(_VITSAM_BARE.match(k) for k in keys)
    ):
        return 'mmpretrain'
    if has_heads and any(k.startswith('prompt_encoder.point_embeddings.') for k in keys):
        return 'mmsam'  # heads without an encoder: reported as missing keys later
    shown = ', '.join(keys[:5]) + (f', ... ({len(keys)} keys)' if len(keys) > 5 else '')
    raise ValueError(
        'not a SAM state dict: expected the keys of the official SAM (image_encoder.*), '
        "Hugging Face's SamModel (vision_encoder.*), mmsam (backbone.*, prompt_encoder.*, "
        f'mask_decoder.*) or mmpretrain ViTSAM (backbone.layers.*); got {shown or "no keys"}'
    )


def to_mmsam_layout(
    state_dict: Mapping[str, torch.Tensor], layout: str = 'auto'
) -> Tuple['OrderedDict', str, List[str]]:
    """Bring a state dict of any known layout to mmsam's names (tensors are shared).

    Args:
        state_dict: the source.
        layout: one of :data:`LAYOUTS`, or ``'auto'`` to :func:`detect_layout`.

    Returns:
        ``(state_dict, layout, ignored)``: ``backbone.*`` (plus ``prompt_encoder.*`` and
        ``mask_decoder.*`` when the source has them), the source layout, and the
        source keys dropped on purpose (:data:`IGNORED_KEYS`, :data:`IGNORED_PREFIXES`).

    Raises:
        ValueError: for an unknown ``layout`` or one that does not fit the keys.
        KeyMapError: for keys no rule of the layout knows.
    """
    detected = detect_layout(state_dict)
    if layout == 'auto':
        layout = detected
    elif layout not in LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    elif layout != detected:
        raise ValueError(
            f'layout {layout!r} was asked for, but the keys are in the {detected!r} layout'
        )
    ignored = [k for k in state_dict if k in IGNORED_KEYS or k.startswith(IGNORED_PREFIXES)]
    dropped = set(ignored)
    kept = OrderedDict((k, v) for k, v in state_dict.items() if k not in dropped)
    if layout == 'official':
        out = convert_official_to_mmsam(kept)
    elif layout == 'hf':
        out = convert_hf_to_mmsam(kept)
    elif layout == 'mmpretrain' and not any(k.startswith('backbone.') for k in kept):
        out = OrderedDict(('backbone.' + k, v) for k, v in kept.items())
    else:
        out = kept
    return out, layout, ignored


def infer_encoder_arch(state_dict: Mapping[str, torch.Tensor], prefix: str = 'backbone.') -> dict:
    """Read the image encoder's size from the shapes of an mmsam-layout state dict.

    Args:
        state_dict: ``backbone.*`` keys in mmpretrain's ``ViTSAM`` layout.
        prefix: the encoder's key prefix.

    Returns:
        dict with ``encoder`` (``'vit'`` or ``'tinyvit'``), ``arch`` and ``arch_settings``
        (ViT: ``'base'``, ``'large'``, ``'huge'`` or ``'custom'``, with ``embed_dims``,
        ``num_layers``, ``num_heads``, ``feedforward_channels``, ``global_attn_indexes``:
        what ``SAMImageEncoder(arch=...)`` takes; TinyViT: see
        :func:`infer_tinyvit_arch`), ``img_size``, ``patch_size`` and ``window_size``.

    Raises:
        ValueError: if the encoder's keys are missing.
    """
    from ..models.backbones.sam_image_encoder import SAMImageEncoder

    if prefix + TINYVIT_MARKER in state_dict:
        return infer_tinyvit_arch(state_dict, prefix)
    if prefix + EFFICIENTVIT_MARKER in state_dict:
        return infer_efficientvit_arch(state_dict, prefix)
    proj = state_dict.get(prefix + 'patch_embed.projection.weight')
    if proj is None:
        raise ValueError(
            f'no image encoder in the state dict ({prefix}patch_embed.projection.weight)'
        )
    embed_dims, patch_size = int(proj.shape[0]), int(proj.shape[-1])
    layer_ids = sorted(
        {
            int(m[1])
            for k in state_dict
            for m in [re.match(re.escape(prefix) + r'layers\.(\d+)\.', k)]
            if m
        }
    )
    num_layers = len(layer_ids)
    pos = state_dict.get(prefix + 'pos_embed')
    tokens = int(pos.shape[1]) if pos is not None else None
    heads, ffn, global_ids, window = None, None, [], 0
    for i in layer_ids:
        rel = state_dict.get(f'{prefix}layers.{i}.attn.rel_pos_h')
        lin1 = state_dict.get(f'{prefix}layers.{i}.ffn.layers.0.0.weight')
        if lin1 is not None:
            ffn = int(lin1.shape[0])
        if rel is None:
            continue
        heads = embed_dims // int(rel.shape[1])
        side = (int(rel.shape[0]) + 1) // 2
        if tokens is not None and side == tokens:
            global_ids.append(i)
        else:
            window = side
    settings = dict(
        embed_dims=embed_dims,
        num_layers=num_layers,
        num_heads=heads,
        feedforward_channels=ffn,
        global_attn_indexes=global_ids,
    )
    name = 'custom'
    for candidate in ('base', 'large', 'huge'):
        if SAMImageEncoder.arch_zoo[candidate] == settings:
            name = candidate
            break
    return dict(
        encoder='vit',
        arch=name,
        arch_settings=settings,
        img_size=tokens * patch_size if tokens is not None else None,
        patch_size=patch_size,
        window_size=window,
    )


#: A key only SAM-HQ's mask decoder has (official, mmsam and converted files alike: the
#: decoder keeps the official names, ``hf_token``, ``hf_mlp``, ``compress_vit_feat``,
#: ``embedding_encoder``, ``embedding_maskfeature``).
SAM_HQ_MARKER = 'mask_decoder.hf_token.weight'


def is_sam_hq(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a full-model state dict (official or mmsam layout) holds SAM-HQ's decoder."""
    return SAM_HQ_MARKER in state_dict


#: A key only MobileSAM's TinyViT encoder has (mmsam's names, without the prefix).
TINYVIT_MARKER = 'patch_embed.seq.0.conv2d.weight'


def infer_tinyvit_arch(state_dict: Mapping[str, torch.Tensor], prefix: str = 'backbone.') -> dict:
    """Read a ``SAMTinyViT`` encoder's size from the shapes of an mmsam-layout state dict.

    Channels come from the convolutions, depths from the block indices, heads from
    each attention's bias table ``(heads, window ** 2)`` and windows from its width.
    Stage 0 is convolutional: its heads and window are not in the weights (the zoo's
    values when the rest matches an arch of the zoo, else 2 and 7; never used).

    Args:
        state_dict: ``backbone.*`` keys in mmsam's ``SAMTinyViT`` layout.
        prefix: the encoder's key prefix.

    Returns:
        dict with ``encoder='tinyvit'``, ``arch`` (``'5m'``, ``'11m'``, ``'21m'`` or
        ``'custom'``), ``arch_settings`` (``channels``, ``depths``, ``num_heads``,
        ``window_sizes``), ``img_size`` (1024: TinyViT has no position tables to tell
        it), ``patch_size`` (16, the features' stride) and ``window_size`` (None).

    Raises:
        ValueError: if the stages' keys are missing.
    """
    from ..models.backbones.sam_tinyvit import SAMTinyViT

    blocks: Dict[int, set] = {}
    for key in state_dict:
        match = re.match(re.escape(prefix) + r'stages\.(\d+)\.blocks\.(\d+)\.', key)
        if match:
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    if sorted(blocks) != list(range(len(blocks))) or not blocks:
        raise ValueError(f'no TinyViT stages in the state dict ({prefix}stages.N.blocks.M.*)')
    channels, heads, windows = [], [2], [7]
    for i in range(len(blocks)):
        if i == 0:
            weight = state_dict[f'{prefix}stages.0.blocks.0.conv1.conv2d.weight']
            channels.append(int(weight.shape[1]))
            continue
        bias = state_dict[f'{prefix}stages.{i}.blocks.0.attn.attention_biases']
        channels.append(int(state_dict[f'{prefix}stages.{i}.blocks.0.attn.norm.weight'].shape[0]))
        heads.append(int(bias.shape[0]))
        windows.append(int(round(bias.shape[1] ** 0.5)))
    settings = dict(
        channels=channels,
        depths=[len(blocks[i]) for i in range(len(blocks))],
        num_heads=heads,
        window_sizes=windows,
    )
    name = 'custom'
    for candidate, zoo in SAMTinyViT.arch_zoo.items():
        # stage 0's heads and window are not in the weights (nor used)
        same = all(list(zoo[k]) == settings[k] for k in ('channels', 'depths')) and all(
            list(zoo[k])[1:] == settings[k][1:] for k in ('num_heads', 'window_sizes')
        )
        if same:
            name, settings = candidate, {k: list(v) for k, v in zoo.items()}
            break
    return dict(
        encoder='tinyvit',
        arch=name,
        arch_settings=settings,
        img_size=1024,
        patch_size=16,
        window_size=None,
    )


#: A key only EfficientViT-SAM's encoder has (mmsam's names, without the prefix).
EFFICIENTVIT_MARKER = 'neck.lateral_convs.0.conv.weight'


def infer_efficientvit_arch(
    state_dict: Mapping[str, torch.Tensor], prefix: str = 'backbone.'
) -> dict:
    """Read a ``SAMEfficientViT`` encoder's size from an mmsam-layout state dict.

    Stage widths come from each stage's last convolution, depths from the block indices,
    the neck's depth from its block indices; the published size with those values is the
    answer (the block types and expansions are not all readable from shapes).

    Args:
        state_dict: ``backbone.*`` keys in mmsam's ``SAMEfficientViT`` layout.
        prefix: the encoder's key prefix.

    Returns:
        dict with ``encoder='efficientvit'``, ``arch`` (``'l0'`` ... ``'xl1'``),
        ``arch_settings`` (the zoo's), ``img_size`` (1024: SAM's frame),
        ``patch_size`` (16) and ``window_size`` (None).

    Raises:
        ValueError: if the stages are missing or fit no published size.
    """
    from ..models.backbones.sam_efficientvit import SAMEfficientViT

    blocks: Dict[int, set] = {}
    neck_blocks = set()
    for key in state_dict:
        match = re.match(re.escape(prefix) + r'stages\.(\d+)\.(\d+)\.', key)
        if match:
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
        match = re.match(re.escape(prefix) + r'neck\.blocks\.(\d+)\.', key)
        if match:
            neck_blocks.add(int(match[1]))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise ValueError(f'no EfficientViT stages in the state dict ({prefix}stages.N.M.*)')
    widths = []
    for i in range(len(blocks)):
        first = f'{prefix}stages.{i}.0.'
        key = first + ('conv.weight' if i == 0 else 'main.point_conv.conv.weight')
        widths.append(int(state_dict[key].shape[0]) if key in state_dict else -1)
    found = dict(
        widths=widths,
        depths=[len(blocks[i]) - 1 for i in range(len(blocks))],
        neck_depth=len(neck_blocks),
    )
    for name, zoo in SAMEfficientViT.arch_zoo.items():
        if all(zoo[k] == v for k, v in found.items()):
            return dict(
                encoder='efficientvit',
                arch=name,
                arch_settings=SAMEfficientViT._parse_arch(name),
                img_size=1024,
                patch_size=16,
                window_size=None,
            )
    raise ValueError(
        f'an EfficientViT-SAM encoder of no published size ({found}); '
        f'known: {sorted(SAMEfficientViT.arch_zoo)}'
    )
