"""Build the official SAM-HQ (``segment_anything_hq``, a test dependency) and mmsam's SAM-HQ
with the same random weights, for parity tests.

Two pairs: a reduced ViT SAM-HQ (the reference's own modules with a small encoder and
input, so that the tests run in seconds) and Light HQ-SAM (``sam_model_registry['vit_tiny']``,
TinyViT-5M at 1024 px: the reference fixes its token grids to that size). mmsam's side is
built from a config and loaded through the one loading path
(:func:`~mmsam.utils.checkpoint_loader.prepare_state_dict`), strictly.
"""

from pathlib import Path
from typing import Tuple

import torch.nn as nn

from .mobile_sam_parity import build_official_tinyvit_sam
from .parity import _arch, build_official_sam, sam_model_cfg

#: The Light HQ-SAM config the parity tests build (the published model's).
LIGHT_HQ_SAM_CONFIG = 'configs/sam_hq/light-hq-sam_tinyvit-5m_3rdparty_hqseg44k-1024px.py'


def config_path(relative: str) -> str:
    """Absolute path of a config of this checkout."""
    return str(Path(__file__).resolve().parents[2] / relative)


def sam_hq_model_cfg(arch='tiny', img_size: int = 1024, window_size: int = 14) -> dict:
    """:func:`~mmsam.testing.parity.sam_model_cfg` with SAM-HQ's decoder."""
    cfg = sam_model_cfg(arch, img_size=img_size, window_size=window_size)
    cfg['mask_decoder']['type'] = 'SAMHQMaskDecoder'
    cfg['mask_decoder']['interm_dims'] = _arch(arch)['embed_dims']
    return cfg


def build_official_light_hq_sam(seed: int = 0) -> nn.Module:
    """The official Light HQ-SAM (``segment_anything_hq.sam_model_registry['vit_tiny']``)
    with random weights (:func:`~.mobile_sam_parity.build_official_tinyvit_sam`)."""
    return build_official_tinyvit_sam('segment_anything_hq', 'vit_tiny', seed)


def load_official_weights(model: nn.Module, official: nn.Module, source: str) -> nn.Module:
    """Put an official model's weights into an mmsam model through the one loading path
    (layout detection, key map, whole check), strictly; returns it in eval mode."""
    from ..utils.checkpoint_loader import prepare_state_dict

    state, _ = prepare_state_dict(official.state_dict(), model.state_dict(), source)
    model.load_state_dict(state, strict=True)
    return model.eval()


def build_sam_hq_pair(
    arch='tiny', img_size: int = 256, window_size: int = 4, seed: int = 0
) -> Tuple[nn.Module, nn.Module]:
    """``(official, mmsam)`` reduced ViT SAM-HQ models with the same random weights."""
    from mmdet.registry import MODELS

    import mmsam.registration  # noqa: F401  (registers the modules)

    official = build_official_sam(
        arch, img_size=img_size, window_size=window_size, seed=seed, hq=True
    )
    model = MODELS.build(sam_hq_model_cfg(arch, img_size=img_size, window_size=window_size))
    return official, load_official_weights(model, official, 'SAM-HQ (reference)')


def build_light_hq_sam_pair(seed: int = 0, fused: bool = True) -> Tuple[nn.Module, nn.Module]:
    """``(official, mmsam)`` Light HQ-SAM models (mmsam's from
    :data:`LIGHT_HQ_SAM_CONFIG`) with the same random weights."""
    from mmsam.apis import get_model

    official = build_official_light_hq_sam(seed)
    model = get_model(config_path(LIGHT_HQ_SAM_CONFIG), backbone=dict(fused=fused))
    return official, load_official_weights(model, official, 'Light HQ-SAM (reference)')
