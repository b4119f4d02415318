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
from typing import Callable, List, Mapping, Tuple

import torch

# (official image-encoder key pattern, mmpretrain ViTSAM replacement)
ENCODER_KEY_RULES: List[Tuple[str, str]] = [
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^pos_embed$', 'pos_embed'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.attn\.(qkv|proj)\.', r'layers.\1.attn.\2.'),
    (r'^blocks\.(\d+)\.attn\.(rel_pos_h|rel_pos_w)$', r'layers.\1.attn.\2'),
    (r'^blocks\.(\d+)\.mlp\.lin1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.lin2\.', r'layers.\1.ffn.layers.1.'),
    (r'^neck\.([0-3])\.', r'channel_reduction.\1.'),
]

# the reverse rules, mmpretrain ViTSAM -> official image encoder
_REVERSE_ENCODER_KEY_RULES: List[Tuple[str, str]] = [
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^pos_embed$', 'pos_embed'),
    (r'^layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
    (r'^layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
    (r'^layers\.(\d+)\.attn\.(qkv|proj)\.', r'blocks.\1.attn.\2.'),
    (r'^layers\.(\d+)\.attn\.(rel_pos_h|rel_pos_w)$', r'blocks.\1.attn.\2'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.', r'blocks.\1.mlp.lin1.'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.', r'blocks.\1.mlp.lin2.'),
    (r'^channel_reduction\.([0-3])\.', r'neck.\1.'),
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


def official_encoder_key_to_mmsam(key: str) -> str:
    """``blocks.0.mlp.lin1.weight`` -> ``layers.0.ffn.layers.0.0.weight`` (no prefix)."""
    return _apply_rules(key, ENCODER_KEY_RULES, 'official image-encoder')


def mmsam_encoder_key_to_official(key: str) -> str:
    """``layers.0.ffn.layers.0.0.weight`` -> ``blocks.0.mlp.lin1.weight`` (no prefix)."""
    return _apply_rules(key, _REVERSE_ENCODER_KEY_RULES, 'mmpretrain ViTSAM')


def official_key_to_mmsam(key: str) -> str:
    """Map one key of an official SAM state dict to mmsam's full-model layout."""
    if key.startswith('image_encoder.'):
        return 'backbone.' + official_encoder_key_to_mmsam(key[len('image_encoder.') :])
    if key.startswith(('prompt_encoder.', 'mask_decoder.')):
        return key
    raise KeyMapError(f'unknown official SAM key {key!r} (expected one of {OFFICIAL_PREFIXES})')


def mmsam_key_to_official(key: str) -> str:
    """Map one key of an mmsam full-model state dict to the official layout."""
    if key.startswith('backbone.'):
        return 'image_encoder.' + mmsam_encoder_key_to_official(key[len('backbone.') :])
    if key.startswith(('prompt_encoder.', 'mask_decoder.')):
        return key
    raise KeyMapError(f'unknown mmsam SAM key {key!r} (expected one of {MMSAM_PREFIXES})')


def _convert(state_dict: Mapping[str, torch.Tensor], fn: Callable[[str], str]) -> 'OrderedDict':
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        try:
            new_key = fn(key)
        except KeyMapError:
            unknown.append(key)
            continue
        if new_key in out:
            raise KeyMapError(f'two keys map to {new_key!r}')
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


def convert_official_encoder_to_vitsam(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict':
    """Extract the image encoder of an official state dict in mmpretrain's ``ViTSAM`` layout."""
    encoder = {
        k[len('image_encoder.') :]: v
        for k, v in state_dict.items()
        if k.startswith('image_encoder.')
    }
    return _convert(encoder, official_encoder_key_to_mmsam)


def is_official_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether the keys look like the official SAM layout (``image_encoder.*`` present)."""
    return any(k.startswith('image_encoder.') for k in state_dict)


def is_mmsam_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether the keys look like mmsam's full-model layout (``backbone.layers.*``)."""
    return any(k.startswith('backbone.') for k in state_dict) and any(
        k.startswith(('prompt_encoder.', 'mask_decoder.')) for k in state_dict
    )
