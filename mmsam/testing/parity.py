"""Build the official SAM (``segment_anything``, a test dependency) and mmsam's SAM
with the same random weights, for parity tests.

The official code initializes the position embedding, the relative-position
tables and the norms to constants; :func:`randomize_parameters` perturbs every
parameter so that a wrong key map or a swapped tensor cannot hide.
"""

import copy
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.backbones import ViTSAM

from ..utils.checkpoint_keys import convert_official_to_mmsam

#: Encoder settings by name: ``tiny`` and ``small`` keep tests fast; ``base``,
#: ``large`` and ``huge`` are SAM's, as mmpretrain's ``ViTSAM.arch_zoo`` has them.
TEST_ARCHS: Dict[str, dict] = {
    'tiny': dict(
        embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=256, global_attn_indexes=[1]
    ),
    'small': dict(
        embed_dims=128,
        num_layers=4,
        num_heads=4,
        feedforward_channels=512,
        global_attn_indexes=[1, 3],
    ),
    **{name: dict(ViTSAM.arch_zoo[name]) for name in ('base', 'large', 'huge')},
}


def _arch(arch) -> dict:
    if isinstance(arch, dict):
        return dict(arch)
    if arch not in TEST_ARCHS:
        raise ValueError(f'arch must be one of {sorted(TEST_ARCHS)} or a dict, got {arch!r}')
    return dict(TEST_ARCHS[arch])


def sam_model_cfg(arch='tiny', img_size: int = 1024, window_size: int = 14) -> dict:
    """An mmsam ``SAM`` model config (a plain dict) for the given encoder settings.

    Args:
        arch (str | dict): A key of :data:`TEST_ARCHS` or an arch dict.
        img_size (int): Input side (1024 for SAM; smaller for fast tests).
        window_size (int): Window side of the non-global encoder layers.

    Returns:
        dict: A config for ``mmdet.registry.MODELS.build``.
    """
    embed = img_size // 16
    return dict(
        type='SAM',
        data_preprocessor=dict(type='SAMDataPreprocessor', image_size=img_size),
        backbone=dict(
            type='mmpretrain.SAMImageEncoder',
            arch=_arch(arch),
            img_size=img_size,
            patch_size=16,
            out_channels=256,
            window_size=window_size,
        ),
        prompt_encoder=dict(
            type='SAMPromptEncoder',
            embed_dims=256,
            image_embedding_size=(embed, embed),
            input_image_size=(img_size, img_size),
            mask_in_channels=16,
        ),
        mask_decoder=dict(
            type='SAMMaskDecoder',
            transformer_dims=256,
            transformer=dict(depth=2, embed_dims=256, num_heads=8, mlp_dims=2048),
        ),
    )


def randomize_parameters(model: nn.Module, seed: int = 0, scale: float = 0.02) -> nn.Module:
    """Perturb every parameter in place with Gaussian noise (deterministic by ``seed``).

    Zero-initialized position tables get a larger draw (std 0.1 for
    ``pos_embed``, 0.5 for ``rel_pos_*``) so that their effect is visible.

    The noise is *added* to the current values, and buffers (such as the prompt
    encoder's random Fourier matrix) are left as they are: build the model right after
    ``torch.manual_seed(...)`` (as :func:`build_official_sam` does), or the weights
    depend on whatever used torch's global generator before.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            std = scale
            if name.endswith('pos_embed'):
                std = 0.1
            elif 'rel_pos_' in name:
                std = 0.5
            elif param.dim() == 1:
                std = 0.1  # norms and biases
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            param.add_(noise.to(param.dtype) * std)
    return model


def build_official_sam(
    arch='tiny',
    img_size: int = 1024,
    window_size: int = 14,
    seed: int = 0,
    randomize: bool = True,
    hq: bool = False,
) -> nn.Module:
    """The official ``segment_anything`` SAM with random weights.

    Args:
        arch (str | dict): Encoder settings (see :data:`TEST_ARCHS`).
        img_size (int): Input side.
        window_size (int): Window side of the non-global layers.
        seed (int): Seed of the weights.
        randomize (bool): Also perturb the constant-initialized parameters.
        hq (bool): SAM-HQ instead: ``segment_anything_hq``'s modules with its
            ``MaskDecoderHQ`` (``arch='base'`` at 1024 px is its
            ``sam_model_registry['vit_b']``).

    Returns:
        segment_anything.modeling.Sam (or segment_anything_hq's): in eval mode.
    """
    import importlib
    from functools import partial

    modeling = importlib.import_module(
        'segment_anything_hq.modeling' if hq else 'segment_anything.modeling'
    )
    ImageEncoderViT, PromptEncoder = modeling.ImageEncoderViT, modeling.PromptEncoder
    Sam, TwoWayTransformer = modeling.Sam, modeling.TwoWayTransformer
    settings = _arch(arch)
    if hq:
        MaskDecoder = partial(modeling.MaskDecoderHQ, vit_dim=settings['embed_dims'])
    else:
        MaskDecoder = modeling.MaskDecoder
    torch.manual_seed(seed)
    embed = img_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=16,
            embed_dim=settings['embed_dims'],
            depth=settings['num_layers'],
            num_heads=settings['num_heads'],
            mlp_ratio=settings['feedforward_channels'] / settings['embed_dims'],
            out_chans=256,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_abs_pos=True,
            use_rel_pos=True,
            window_size=window_size,
            global_attn_indexes=tuple(settings['global_attn_indexes']),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(embed, embed),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    if randomize:
        randomize_parameters(sam, seed=seed)
    return sam.eval()


def official_to_mmsam(
    official: nn.Module, arch='tiny', window_size: int = 14, device: Optional[str] = None
) -> nn.Module:
    """mmsam's SAM carrying the weights of an official model (converted keys, strict).

    Args:
        official (segment_anything.modeling.Sam): The reference model.
        arch (str | dict): Its encoder settings (see :data:`TEST_ARCHS`).
        window_size (int): Its window side.
        device (str, optional): Where to put the model.

    Returns:
        mmsam.models.SAM: in eval mode.
    """
    from mmdet.registry import MODELS

    import mmsam.registration  # noqa: F401  (registers the modules)

    img_size = official.image_encoder.img_size
    model = MODELS.build(sam_model_cfg(arch, img_size=img_size, window_size=window_size))
    state = convert_official_to_mmsam(copy.deepcopy(official.state_dict()))
    model.load_state_dict(state, strict=True)
    if device is not None:
        model.to(device)
    return model.eval()


def max_abs_diff(a, b) -> float:
    """Largest absolute difference of two arrays or tensors of the same shape (float)."""
    import numpy as np

    a, b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def assert_amg_records_match(ref: list, got: list, min_records: int = 5) -> None:
    """Automatic-mask-generator records of the reference and of mmsam agree: same count
    (at least ``min_records``), keys, points, boxes and crop boxes; areas and masks within
    two pixels (logits within ~1e-5: a pixel at the threshold may flip); predicted IoU
    within 1e-5 and stability score within 1e-3."""
    assert len(got) == len(ref) >= min_records
    for i, (r, o) in enumerate(zip(ref, got)):
        assert set(o) == set(r)
        assert (o['segmentation'] != r['segmentation']).sum() <= 2, i
        assert abs(o['area'] - r['area']) <= 2 and o['point_coords'] == r['point_coords'], i
        assert o['crop_box'] == r['crop_box'] and o['bbox'] == r['bbox'], i
        assert abs(o['predicted_iou'] - r['predicted_iou']) <= 1e-5, i
        assert abs(o['stability_score'] - r['stability_score']) <= 1e-3, i


#: Prompt sets for predictor parity on a 480 x 640 image: ``SamPredictor.predict`` keyword
#: arguments (numpy for the reference; mmsam takes lists too).
PREDICTOR_CASES = {
    'one_point': dict(point_coords=[[260.0, 200.0]], point_labels=[1]),
    'points': dict(point_coords=[[260.0, 200.0], [500.0, 400.0]], point_labels=[1, 0]),
    'box': dict(box=[100.0, 80.0, 450.0, 400.0]),
    'box_point': dict(point_coords=[[260.0, 200.0]], point_labels=[1], box=[100, 80, 450, 400]),
}


def assert_predictions_match(ref, ours, kwargs: dict, multimask: bool, atol: float = 1e-4):
    """A reference predictor and mmsam's ``SAMPredictor`` (images set) agree on one prompt:
    scores and low-resolution logits within ``atol``, and a mask pixel may differ only where
    the reference logit lies within ``atol`` of the threshold. The reference gets numpy."""
    import numpy as np

    ref_kwargs = {k: np.asarray(v) for k, v in kwargs.items()}
    ref_masks, ref_scores, ref_low = ref.predict(**ref_kwargs, multimask_output=multimask)
    ref_logits = ref.predict(**ref_kwargs, multimask_output=multimask, return_logits=True)[0]
    masks, scores, low = ours.predict(**kwargs, multimask_output=multimask)
    assert masks.shape == ref_masks.shape and masks.shape[0] == (3 if multimask else 1)
    assert max_abs_diff(scores, ref_scores) <= atol
    assert max_abs_diff(low, ref_low) <= atol
    assert_masks_match_logits(masks, ref_logits, atol=atol)
    assert 0 < ref_masks.sum() < ref_masks.size


def assert_masks_match_logits(masks, ref_logits, threshold: float = 0.0, atol: float = 1e-4):
    """Binary masks of one computation path agree with the logits of another path (other
    code, other batching, ONNX, ...) for the same prompts: a pixel may differ from
    ``ref_logits > threshold`` only where the reference logit lies within ``atol`` of the
    threshold. Float rounding differs between code paths and between CPUs (AVX2, AVX-512,
    AMX), so such a pixel may flip; an exact comparison would depend on the CPU model.

    Args:
        masks: ``(..., H, W)`` bool array or tensor.
        ref_logits: logits of the same shape.
        threshold: the mask threshold of the logits.
        atol: how far from the threshold a logit may flip.
    """
    import numpy as np

    masks, ref_logits = (
        x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
        for x in (masks, ref_logits)
    )
    masks = masks.astype(bool)
    assert masks.shape == ref_logits.shape, (masks.shape, ref_logits.shape)
    differ = masks != (ref_logits > threshold)
    far = np.abs(ref_logits - threshold) > atol
    bad = int((differ & far).sum())
    assert bad == 0, f'{bad} mask pixels differ where the reference logit is not within {atol}'


def build_sam_pair(
    arch='tiny', img_size: int = 1024, window_size: int = 14, seed: int = 0
) -> Tuple[nn.Module, nn.Module]:
    """``(official, mmsam)`` SAM models with the same random weights."""
    official = build_official_sam(arch, img_size=img_size, window_size=window_size, seed=seed)
    return official, official_to_mmsam(official, arch, window_size=window_size)
