"""An official SAM state dict re-laid out as Hugging Face's ``transformers.SamModel`` holds it.

A test fixture, written from ``transformers``' module tree (``SamVisionEncoder``,
``SamPromptEncoder``, ``SamMaskDecoder``) rather than from mmsam's key map, so that
converting its output checks the map instead of repeating it. ``transformers`` is
not needed.
"""

from collections import OrderedDict
from typing import List, Mapping

import torch

# official nn.Sequential index -> HF attribute
_NECK = {'0': 'conv1', '1': 'layer_norm1', '2': 'conv2', '3': 'layer_norm2'}
_MASK_DOWNSCALING = {
    '0': 'conv1',
    '1': 'layer_norm1',
    '3': 'conv2',
    '4': 'layer_norm2',
    '6': 'conv3',
}
_UPSCALING = {'0': 'upscale_conv1', '1': 'upscale_layer_norm', '3': 'upscale_conv2'}


def _mlp_part(index: int, depth: int) -> List[str]:
    """HF's ``SamFeedForward``: ``proj_in``, hidden ``layers.K``, ``proj_out``."""
    if index == 0:
        return ['proj_in']
    if index == depth - 1:
        return ['proj_out']
    return ['layers', str(index - 1)]


def _encoder(parts: List[str]) -> List[str]:
    head = parts[0]
    if head == 'patch_embed':  # patch_embed.proj.weight
        return ['patch_embed', 'projection'] + parts[2:]
    if head == 'pos_embed':
        return parts
    if head == 'neck':
        return ['neck', _NECK[parts[1]]] + parts[2:]
    if head == 'blocks':  # blocks.N.<module>...
        module = parts[2]
        renamed = {'norm1': 'layer_norm1', 'norm2': 'layer_norm2'}.get(module, module)
        return ['layers', parts[1], renamed] + parts[3:]
    raise KeyError('.'.join(parts))


def _prompt(parts: List[str]) -> List[str]:
    head = parts[0]
    if head == 'pe_layer':
        return ['shared_embedding', 'positional_embedding']
    if head == 'point_embeddings':
        return ['point_embed'] + parts[1:]
    if head == 'mask_downscaling':
        return ['mask_embed', _MASK_DOWNSCALING[parts[1]]] + parts[2:]
    return parts  # not_a_point_embed, no_mask_embed


def _decoder(parts: List[str], depth: int) -> List[str]:
    head = parts[0]
    if head == 'output_upscaling':
        return [_UPSCALING[parts[1]]] + parts[2:]
    if head == 'output_hypernetworks_mlps':  # output_hypernetworks_mlps.N.layers.K.weight
        return parts[:2] + _mlp_part(int(parts[3]), depth) + parts[4:]
    if head == 'iou_prediction_head':  # iou_prediction_head.layers.K.weight
        return parts[:1] + _mlp_part(int(parts[2]), depth) + parts[3:]
    if head == 'transformer':
        out = []
        for p in parts:
            if p.startswith('norm'):  # norm1..norm4, norm_final_attn
                p = 'layer_' + p
            out.append(p)
        return out
    return parts  # iou_token, mask_tokens


def official_to_hf_state_dict(
    official: Mapping[str, torch.Tensor],
    positional: str = 'both',
    legacy_upscale_name: bool = False,
    mlp_depth: int = 3,
) -> 'OrderedDict[str, torch.Tensor]':
    """Rename an official SAM state dict to Hugging Face's key names (same tensors).

    Args:
        official: ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``.
        positional: where to put the shared random-Fourier matrix: ``'model'``
            (``shared_image_embedding.positional_embedding``), ``'prompt'``
            (``prompt_encoder.shared_embedding.positional_embedding``) or ``'both'``.
        legacy_upscale_name: spell ``upsacle_layer_norm`` as early releases did.
        mlp_depth: linear layers of the decoder MLPs (SAM: 3).

    Returns:
        The state dict in HF's layout.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in official.items():
        parts = key.split('.')
        top, rest = parts[0], parts[1:]
        if top == 'image_encoder':
            new = ['vision_encoder'] + _encoder(rest)
        elif top == 'prompt_encoder':
            new = ['prompt_encoder'] + _prompt(rest)
        elif top == 'mask_decoder':
            new = ['mask_decoder'] + _decoder(rest, mlp_depth)
        else:
            raise KeyError(key)
        name = '.'.join(new)
        if legacy_upscale_name:
            name = name.replace('upscale_layer_norm', 'upsacle_layer_norm')
        if name == 'prompt_encoder.shared_embedding.positional_embedding':
            if positional in ('model', 'both'):
                out['shared_image_embedding.positional_embedding'] = value
            if positional == 'model':
                continue
        out[name] = value
    return out
