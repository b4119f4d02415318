"""Build the official MobileSAM (``mobile_sam``, a test dependency) and mmsam's MobileSAM
with the same random weights, for parity tests.

The reference initializes its batch norms to identity statistics, the attention bias
tables to zero and ``conv3`` of every MBConv to a zero scale;
:func:`randomize_mobile_sam` perturbs every parameter (as :func:`randomize_parameters`
does for SAM) and draws the batch-norm running statistics too, so that a wrong key map,
a swapped tensor or a mis-folded batch norm cannot hide.
"""

from pathlib import Path
from typing import Tuple

import torch
import torch.nn as nn

from .parity import randomize_parameters

#: The MobileSAM config the parity tests build (the published model's).
MOBILE_SAM_CONFIG = 'configs/mobile_sam/mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px.py'


def mobile_sam_config_path() -> str:
    """Absolute path of :data:`MOBILE_SAM_CONFIG` in this checkout."""
    return str(Path(__file__).resolve().parents[2] / MOBILE_SAM_CONFIG)


def randomize_mobile_sam(model: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb every parameter and draw every batch norm's running statistics.

    Args:
        model: a MobileSAM (reference) or any module with ``BatchNorm2d`` layers.
        seed: seed of the draw.

    Returns:
        The same module, changed in place (call ``.eval()`` afterwards: the reference's
        attention caches its bias table when switched to eval mode).
    """
    randomize_parameters(model, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.add_(1.0)  # around 1 (conv3 of MBConv starts at 0)
            if hasattr(module, 'attention_biases'):
                module.attention_biases.normal_(0.0, 0.5, generator=gen)
    return model


def build_official_tinyvit_sam(package: str, name: str, seed: int = 0) -> nn.Module:
    """A reference TinyViT SAM (``<package>.sam_model_registry[name]``) with random
    weights, batch-norm statistics and attention bias tables drawn too.

    Args:
        package (str): ``'mobile_sam'`` (MobileSAM) or ``'segment_anything_hq'``
            (Light HQ-SAM).
        name (str): The registry key: ``'vit_t'`` or ``'vit_tiny'``.
        seed (int): Seeds the build and the randomization.

    Returns:
        nn.Module: The reference ``Sam`` in eval mode.
    """
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # timm's deprecation and registry warnings
        registry = importlib.import_module(package).sam_model_registry

    torch.manual_seed(seed)
    model = registry[name]()
    randomize_mobile_sam(model, seed=seed)
    return model.eval()  # rebuilds the attention bias tables from the drawn weights


def build_official_mobile_sam(seed: int = 0) -> nn.Module:
    """The official MobileSAM (``mobile_sam.sam_model_registry['vit_t']``) with random
    weights (:func:`build_official_tinyvit_sam`)."""
    return build_official_tinyvit_sam('mobile_sam', 'vit_t', seed)


def official_to_mmsam_mobile(official: nn.Module, fused: bool = True) -> nn.Module:
    """mmsam's MobileSAM (built from :data:`MOBILE_SAM_CONFIG`) with the reference's weights.

    The weights go through the one loading path (:func:`prepare_state_dict`: layout
    detection, key map, whole check) and load strictly.

    Args:
        official: the reference model.
        fused: the encoder's ``fused`` switch.

    Returns:
        mmsam.models.SAM: in eval mode.
    """
    from mmsam.apis import get_model
    from mmsam.utils.checkpoint_loader import prepare_state_dict

    model = get_model(mobile_sam_config_path(), backbone=dict(fused=fused))
    state, _ = prepare_state_dict(official.state_dict(), model.state_dict(), 'MobileSAM')
    model.load_state_dict(state, strict=True)
    return model.eval()


def build_mobile_sam_pair(seed: int = 0, fused: bool = True) -> Tuple[nn.Module, nn.Module]:
    """``(official, mmsam)`` MobileSAM models with the same random weights."""
    official = build_official_mobile_sam(seed)
    return official, official_to_mmsam_mobile(official, fused=fused)
