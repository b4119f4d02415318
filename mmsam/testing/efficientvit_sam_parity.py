"""Build the official EfficientViT-SAM (``efficientsam``, a test dependency) and mmsam's
EfficientViT-SAM with the same random weights, for parity tests.

:func:`randomize_mobile_sam` perturbs every parameter and draws the batch-norm running
statistics, so that a wrong key map, a swapped tensor or a batch norm on the wrong
convolution cannot hide.
"""

from pathlib import Path
from typing import Tuple

import torch
import torch.nn as nn

from .mobile_sam_parity import randomize_mobile_sam

#: The EfficientViT-SAM configs by the reference's model names (``efficientvit-sam-<size>``).
EFFICIENTVIT_SAM_CONFIGS = {
    'l0': 'configs/efficientvit_sam/efficientvit-sam_l0_3rdparty_sa1b-512px.py',
    'l1': 'configs/efficientvit_sam/efficientvit-sam_l1_3rdparty_sa1b-512px.py',
    'l2': 'configs/efficientvit_sam/efficientvit-sam_l2_3rdparty_sa1b-512px.py',
    'xl0': 'configs/efficientvit_sam/efficientvit-sam_xl0_3rdparty_sa1b-1024px.py',
    'xl1': 'configs/efficientvit_sam/efficientvit-sam_xl1_3rdparty_sa1b-1024px.py',
}


def efficientvit_sam_config_path(size: str) -> str:
    """Absolute path of the config of EfficientViT-SAM ``size`` (``'l0'`` ... ``'xl1'``)."""
    return str(Path(__file__).resolve().parents[2] / EFFICIENTVIT_SAM_CONFIGS[size])


def build_official_efficientvit_sam(size: str, seed: int = 0) -> nn.Module:
    """The official ``create_efficientvit_sam_model(f'efficientvit-sam-{size}')`` with
    random weights (norm epsilons 1e-6, as the reference's model zoo sets them).

    Returns:
        efficientsam.models.efficientvit.EfficientViTSam: in eval mode.
    """
    from efficientsam.sam_model_zoo import create_efficientvit_sam_model

    torch.manual_seed(seed)
    model = create_efficientvit_sam_model(f'efficientvit-sam-{size}', pretrained=False)
    randomize_mobile_sam(model, seed=seed)
    return model.eval()


def official_to_mmsam_efficientvit(official: nn.Module, size: str) -> nn.Module:
    """mmsam's EfficientViT-SAM (built from its config) with the reference's weights,
    through the one loading path (:func:`prepare_state_dict`), loaded strictly.

    Returns:
        mmsam.models.SAM: in eval mode.
    """
    from mmsam.apis import get_model
    from mmsam.utils.checkpoint_loader import prepare_state_dict

    model = get_model(efficientvit_sam_config_path(size))
    name = f'EfficientViT-SAM-{size.upper()}'
    state, _ = prepare_state_dict(official.state_dict(), model.state_dict(), name)
    model.load_state_dict(state, strict=True)
    return model.eval()


def build_efficientvit_sam_pair(size: str, seed: int = 0) -> Tuple[nn.Module, nn.Module]:
    """``(official, mmsam)`` EfficientViT-SAM models of ``size`` with the same random weights."""
    official = build_official_efficientvit_sam(size, seed)
    return official, official_to_mmsam_efficientvit(official, size)
