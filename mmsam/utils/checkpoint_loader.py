"""The one way mmsam puts a checkpoint into a model.

Every entry point goes through :func:`prepare_state_dict`: ``mmsam.get_model``, the
converter (``tools/model_converters/sam2mmsam.py``), the model's own
``load_state_dict`` (``SAM`` converts foreign layouts in a pre-hook), mmengine's runner
(``SAMRunner`` loads ``load_from`` with :func:`load_checkpoint_to_model`), ``tools/test.py``,
the predictors, the command line and the ONNX exporter.

Preparing a state dict means, in this order:

1. detect its layout (official ``segment_anything``, Hugging Face ``SamModel``,
   mmpretrain ``ViTSAM``, mmsam) and convert the keys in memory;
2. drop the prompt encoder and mask decoder when the model is headless;
3. check every key and shape against the model, before anything is copied, and refuse
   with the file name and the missing / unexpected / mismatched keys.
"""

from collections import OrderedDict
from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn as nn

from .checkpoint_io import CheckpointLoadError, check_state_dict, load_checkpoint_file
from .checkpoint_keys import KeyMapError, infer_encoder_arch, is_sam_hq, to_mmsam_layout

HEAD_PREFIXES = ('prompt_encoder.', 'mask_decoder.')


def _describe(arch_info: dict) -> str:
    s = arch_info['arch_settings']
    if arch_info.get('encoder') == 'tinyvit':
        return f'TinyViT {arch_info["arch"]} (channels {s["channels"]})'
    if arch_info.get('encoder') == 'efficientvit':
        return f'EfficientViT-SAM {arch_info["arch"].upper()} (widths {s["widths"]})'
    name = arch_info['arch'] if arch_info['arch'] != 'custom' else 'custom ViT'
    return f'{name} ({s["embed_dims"]} wide, {s["num_layers"]} layers, {arch_info["img_size"]}px)'


def _size_detail(given: Mapping[str, torch.Tensor], expected: Mapping[str, Any]) -> str:
    """A sentence naming both encoder sizes when they differ, else ``''``."""
    try:
        theirs, ours = infer_encoder_arch(given), infer_encoder_arch(expected)
    except (ValueError, KeyError, TypeError, AttributeError):
        return ''
    if theirs['arch_settings'] == ours['arch_settings']:
        return ''
    return f'The checkpoint holds a {_describe(theirs)} encoder, the model a {_describe(ours)} one.'


def prepare_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    source: str,
    layout: str = 'auto',
    allow_resize: bool = True,
) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, Any]]:
    """Bring a state dict of any SAM layout to a model's keys, checked whole.

    Args:
        state_dict: the checkpoint's tensors, in any layout :func:`to_mmsam_layout` reads.
        expected: the model's ``state_dict()`` (tensors may live on the ``meta`` device).
            A model without ``prompt_encoder.*`` / ``mask_decoder.*`` keys is headless:
            the checkpoint's heads are dropped.
        source: the file (or name) to blame in error messages.
        layout: ``'auto'`` or one of ``'official'``, ``'hf'``, ``'mmsam'``, ``'mmpretrain'``.
        allow_resize: accept position tables of another spatial size (the image encoder
            resamples them on load).

    Returns:
        ``(state_dict, info)``: the state dict with exactly ``expected``'s keys, and
        ``info`` with ``layout`` (the source layout) and ``ignored`` (keys left out on
        purpose: normalization buffers, or the heads for a headless model).

    Raises:
        CheckpointLoadError: if the keys are not a SAM state dict (or not ``layout``).
        CheckpointMismatchError: if keys are missing or left over, or shapes differ.
    """
    try:
        state, src_layout, ignored = to_mmsam_layout(state_dict, layout)
    except (KeyMapError, ValueError) as e:
        raise CheckpointLoadError(f'checkpoint {source!r}: {e}') from e
    headless = not any(k.startswith(HEAD_PREFIXES) for k in expected)
    if headless:
        heads = [k for k in state if k.startswith(HEAD_PREFIXES)]
        ignored = ignored + heads
        for key in heads:
            del state[key]
    detail = ''
    if not headless and not any(k.startswith('mask_decoder.') for k in state):
        detail = (
            'It holds an image encoder only: load it into a headless model '
            '(vit-*-p16_sam-pre_*), or use a full SAM checkpoint. '
        )
    elif not headless and is_sam_hq(expected) != is_sam_hq(state):
        detail = (
            "It is a SAM-HQ checkpoint (its mask decoder has SAM-HQ's HQ token and fusion "
            'layers): load it into a configs/sam_hq model. '
            if is_sam_hq(state)
            else "It is a SAM checkpoint without SAM-HQ's decoder parts (mask_decoder."
            'hf_token, hf_mlp, compress_vit_feat, embedding_encoder, embedding_maskfeature): '
            'use a SAM-HQ checkpoint, or the SAM config of this encoder. '
        )
    detail += _size_detail(state, expected)
    check_state_dict(expected, state, source, allow_resize=allow_resize, detail=detail.strip())
    return state, dict(layout=src_layout, ignored=ignored)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP / mmengine model wrapper (or ``model`` itself)."""
    from mmengine.model import is_model_wrapper

    return model.module if is_model_wrapper(model) else model


def load_checkpoint_to_model(model: nn.Module, checkpoint: str, layout: str = 'auto') -> dict:
    """Load a checkpoint file of any SAM layout into ``model``, whole or not at all.

    Args:
        model: a ``SAM`` or a headless ``ImageClassifier`` with a ``SAMImageEncoder``
            (a DDP / mmengine wrapper around one also works).
        checkpoint: a local ``.pth``, ``.pt``, ``.bin`` or ``.safetensors`` file.
        layout: ``'auto'`` or one of ``'official'``, ``'hf'``, ``'mmsam'``, ``'mmpretrain'``.

    Returns:
        dict: ``layout``, ``ignored`` (see :func:`prepare_state_dict`) and ``meta`` (the
        file's metadata, if any).

    Raises:
        FileNotFoundError: if the file does not exist.
        CheckpointLoadError: if it is not a readable SAM checkpoint; its subclass
            ``CheckpointMismatchError`` if it does not fit the model. The model is left
            untouched in both cases.
    """
    model = unwrap_model(model)
    state, meta = load_checkpoint_file(checkpoint)
    state, info = prepare_state_dict(state, model.state_dict(), checkpoint, layout=layout)
    model.load_state_dict(state, strict=True)
    info['meta'] = meta
    return info
