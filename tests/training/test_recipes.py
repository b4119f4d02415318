"""Each fine-tuning recipe trains exactly the parameters it says it trains."""

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mmsam.registration  # noqa: F401
from mmsam.testing.training import (
    DECODER_FT,
    FULL_FT,
    LORA_FT,
    shapes_batch,
    tiny_recipe,
)


def _build(cfg):
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    return model.train()


def _grads(model, seed=0):
    data = model.data_preprocessor(shapes_batch(seed), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_mask_focal', 'loss_mask_dice', 'loss_iou'}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def _has_grad(grad):
    return grad is not None and grad.abs().sum() > 0


def test_decoder_only_trains_prompt_encoder_and_decoder():
    model = _build(tiny_recipe(DECODER_FT))
    assert not any(p.requires_grad for p in model.backbone.parameters())
    grads = _grads(model)
    for name, grad in grads.items():
        if name.startswith('backbone.'):
            assert grad is None, name
    assert _has_grad(grads['mask_decoder.output_upscaling.0.weight'])
    assert _has_grad(grads['prompt_encoder.mask_downscaling.0.weight'])  # mask prompts fed back
    assert _has_grad(grads['mask_decoder.iou_prediction_head.layers.0.weight'])


def test_lora_trains_only_the_lora_factors_of_the_encoder():
    model = _build(tiny_recipe(LORA_FT))
    grads = _grads(model)
    encoder = {n: g for n, g in grads.items() if n.startswith('backbone.')}
    lora = [n for n in encoder if '.lora_' in n]
    assert lora and all('attn.qkv' in n or 'attn.proj' in n for n in lora)
    for name, grad in encoder.items():
        if '.lora_down.' in name:  # one factor starts at zero: the other has no grad yet
            up = name.replace('.lora_down.', '.lora_up.')
            assert _has_grad(grad) or _has_grad(encoder[up]), name
        elif '.lora_' not in name:
            assert grad is None, name
    assert _has_grad(grads['mask_decoder.output_upscaling.0.weight'])


def test_full_finetuning_trains_everything_with_layerwise_lr_decay():
    cfg = tiny_recipe(FULL_FT)
    model = _build(cfg)
    grads = _grads(model)
    for name, grad in grads.items():
        if name.startswith('backbone.'):
            assert _has_grad(grad), name
    assert _has_grad(grads['mask_decoder.output_upscaling.0.weight'])
    with DefaultScope.overwrite_default_scope('mmdet'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {g['param_name']: g['lr'] for g in wrapper.optimizer.param_groups}
    base = cfg.optim_wrapper.optimizer.lr
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    depth = 2 + 2  # tiny: 2 layers + patch embedding + head
    assert lrs['backbone.patch_embed.projection.weight'] == pytest.approx(base * rate**3)
    assert lrs['backbone.layers.0.attn.qkv.weight'] == pytest.approx(base * rate ** (depth - 2))
    assert lrs['backbone.layers.1.attn.qkv.weight'] == pytest.approx(base * rate ** (depth - 3))
    assert lrs['backbone.channel_reduction.0.weight'] == pytest.approx(base)
    assert lrs['mask_decoder.output_upscaling.0.weight'] == pytest.approx(base)


def test_gradient_checkpointing_gives_the_same_gradients():
    cfg = tiny_recipe(FULL_FT)
    plain = _grads(_build(cfg))
    cfg.model.backbone.with_cp = True
    checkpointed = _grads(_build(cfg))
    for name, grad in plain.items():
        if grad is not None:
            torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7)


def test_low_res_loss_option():
    cfg = tiny_recipe(DECODER_FT, low_res_loss=True)
    grads = _grads(_build(cfg))
    assert _has_grad(grads['mask_decoder.output_upscaling.0.weight'])
    assert _has_grad(grads['prompt_encoder.mask_downscaling.0.weight'])
    assert all(g is None for n, g in grads.items() if n.startswith('backbone.'))
