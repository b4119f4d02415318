"""tools/model_converters/mmsam2official.py: fine-tuned mmsam weights run in the official code."""

import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.registry import DefaultScope

import mmsam.registration  # noqa: F401
from mmsam.testing.parity import build_official_sam, randomize_parameters, sam_model_cfg
from mmsam.testing.training import IMG_SIZE, LORA_FT, REPO, WINDOW, tiny_model_overrides
from mmsam.utils.checkpoint_io import save_checkpoint

pytest.importorskip('segment_anything')

TOOL = osp.join(REPO, 'tools', 'model_converters', 'mmsam2official.py')


def _export(src, dst, *extra):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(
        [sys.executable, TOOL, src, dst, *extra], env=env, capture_output=True, text=True
    )
    return proc.returncode, proc.stdout + proc.stderr


def _official_outputs(official, image, box):
    with torch.no_grad():
        emb = official.image_encoder(image)
        sparse, dense = official.prompt_encoder(points=None, boxes=box, masks=None)
        return official.mask_decoder(
            image_embeddings=emb,
            image_pe=official.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )


def _mmsam_outputs(model, image, box):
    with torch.no_grad():
        emb = model.extract_feat(image)[0]
        return model.predict_prompts(emb, boxes=box, multimask_output=True)


def _inputs():
    gen = torch.Generator().manual_seed(0)
    image = torch.randn((1, 3, IMG_SIZE, IMG_SIZE), generator=gen)
    return image, torch.tensor([[10.0, 20.0, 90.0, 100.0]])


def _assert_close(model, official):
    image, box = _inputs()
    for got, want in zip(
        _mmsam_outputs(model, image, box), _official_outputs(official, image, box)
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_exported_checkpoint_loads_strictly_in_the_official_model(tmp_path):
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(sam_model_cfg('tiny', img_size=IMG_SIZE, window_size=WINDOW))
    randomize_parameters(model, seed=1).eval()  # stands for fine-tuned weights
    src, dst = str(tmp_path / 'ft.pth'), str(tmp_path / 'official.pth')
    save_checkpoint(model.state_dict(), src, meta=dict(epoch=3))
    code, out = _export(src, dst)
    assert code == 0, out
    official = build_official_sam('tiny', img_size=IMG_SIZE, window_size=WINDOW, seed=5)
    state = torch.load(dst, weights_only=True)
    assert all(k.startswith(('image_encoder.', 'prompt_encoder.', 'mask_decoder.')) for k in state)
    official.load_state_dict(state, strict=True)
    _assert_close(model, official.eval())


def test_lora_checkpoint_is_folded_into_plain_weights(tmp_path):
    cfg_path = tmp_path / 'lora.py'
    model_cfg = tiny_model_overrides(dict(backbone=dict(module=dict())), for_merge=True, dims=256)
    cfg_path.write_text(
        f'_base_ = [{osp.join(REPO, "configs", "sam", LORA_FT)!r}]\nmodel = {model_cfg!r}\n'
    )
    from mmengine.config import Config

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(Config.fromfile(str(cfg_path)).model)
    randomize_parameters(model, seed=2).eval()  # LoRA factors non-zero too
    assert any('.lora_up.' in k for k in model.state_dict())
    src, dst = str(tmp_path / 'lora_ft.pth'), str(tmp_path / 'official.pth')
    save_checkpoint(model.state_dict(), src)
    code, out = _export(src, dst)
    assert code == 1 and 'give its training config with --config' in out
    assert not osp.exists(dst)
    code, out = _export(src, dst, '--config', str(cfg_path))
    assert code == 0, out
    official = build_official_sam('tiny', img_size=IMG_SIZE, window_size=WINDOW, seed=5)
    official.load_state_dict(torch.load(dst, weights_only=True), strict=True)
    _assert_close(model, official.eval())
