"""Each fine-tuning recipe trains exactly the parameters it says it trains."""

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mmsam.registration  # noqa: F401
from mmsam.models.task_modules import SAMInteractiveLoss
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


def _losses_and_grads(model, seed=0):
    data = model.data_preprocessor(shapes_batch(seed), True)
    losses = model(**data, mode='loss')
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v.detach()) for k, v in losses.items()}, grads


@pytest.mark.parametrize('low_res_loss', [False, True])
def test_checkpointed_rounds_equal_the_plain_ones(low_res_loss):
    """train_cfg.checkpoint_rounds (the default) keeps only each round's inputs and
    low-res outputs for the backward pass: the loss values and the gradients equal
    those of the plain path."""
    cfg = tiny_recipe(DECODER_FT, low_res_loss=low_res_loss)
    assert SAMInteractiveLoss().checkpoint_rounds  # on by default
    checked_model = _build(cfg)
    checked, checked_grads = _losses_and_grads(checked_model)
    assert checked_model.__dict__['_training_loss'].checkpoint_rounds
    cfg.model.train_cfg.checkpoint_rounds = False
    plain, plain_grads = _losses_and_grads(_build(cfg))
    assert checked.keys() == plain.keys()
    for key in plain:
        assert checked[key] == pytest.approx(plain[key], rel=1e-6, abs=1e-6), key
    assert checked_grads.keys() == plain_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checked_grads[name], grad, rtol=1e-6, atol=1e-6, msg=name)


def test_training_decodes_with_the_inference_multimask_rule(monkeypatch):
    """Training asks SAM.ambiguous_prompts (inference's 'auto' rule) which rounds get the
    three outputs: the first round of a point prompt only."""
    model = _build(tiny_recipe(DECODER_FT))
    calls = []
    decode = model.predict_prompts

    def spy(embedding, points, boxes, mask_inputs, multimask_output=True):
        n = len(boxes) if boxes is not None else len(points[0])
        auto = model.multimask_prompts(points, boxes, mask_inputs, n)  # inference, 'auto'
        calls.append((multimask_output, auto, points, boxes, mask_inputs))
        return decode(embedding, points, boxes, mask_inputs, multimask_output)

    monkeypatch.setattr(model, 'predict_prompts', spy)
    data = model.data_preprocessor(shapes_batch(0), True)
    model(**data, mode='loss')
    assert calls
    for multimask, auto, points, boxes, mask_inputs in calls:
        assert torch.equal(auto, torch.full_like(auto, multimask))
        first_point_round = boxes is None and mask_inputs is None
        assert multimask == first_point_round
        if first_point_round:
            assert points[0].shape[1] == 1
    assert any(c[0] for c in calls) and not all(c[0] for c in calls)
    # padding points do not count (the shared rule): one point + one padding is ambiguous
    coords = torch.zeros(2, 2, 2)
    labels = torch.tensor([[1, -1], [1, 0]])
    assert model.ambiguous_prompts((coords, labels), None, None, 2).tolist() == [True, False]
