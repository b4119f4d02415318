"""Helpers of the training tests: recipe configs shrunk to a tiny SAM, small batches."""

import json
import os
import os.path as osp
from typing import Optional, Union

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.structures import InstanceData

from .parity import TEST_ARCHS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # the checkout
CONFIGS = osp.join(REPO, 'configs', 'sam')
IMG_SIZE, WINDOW = 128, 4

DECODER_FT = 'sam_vit-base-p16_decoder-ft_8xb2-12e_coco-instance.py'
LORA_FT = 'sam_vit-base-p16_lora-ft_8xb2-12e_coco-instance.py'
FULL_FT = 'sam_vit-base-p16_full-ft-lrd_8xb2-12e_coco-instance.py'


def tiny_model_overrides(cfg_model: dict, for_merge: bool = False, dims: int = 64) -> dict:
    """Shrink a recipe's SAM to the tiny test encoder at 128 px (in place).

    Args:
        cfg_model (dict): The ``model`` dict (a recipe's, or an override to merge).
        for_merge (bool): The dict is written into a child config (the arch dict
            replaces the base's arch name with ``_delete_``).
        dims (int): Channels of the neck, prompt encoder and mask decoder: 256 is
            SAM's decoder (8 heads, MLP 2048); 64 (2 heads, MLP 256) makes a training
            step about 10x cheaper.

    Returns:
        dict: ``cfg_model``.
    """
    embed = IMG_SIZE // 16
    encoder = cfg_model.setdefault('backbone', {})
    if 'module' in encoder:  # LoRA wrapper
        encoder = encoder['module']
    arch = dict(TEST_ARCHS['tiny'], _delete_=True) if for_merge else dict(TEST_ARCHS['tiny'])
    encoder.update(arch=arch, img_size=IMG_SIZE, window_size=WINDOW, out_channels=dims)
    cfg_model.setdefault('data_preprocessor', {})['image_size'] = IMG_SIZE
    cfg_model.setdefault('prompt_encoder', {}).update(
        embed_dims=dims, image_embedding_size=(embed, embed), input_image_size=(IMG_SIZE, IMG_SIZE)
    )
    cfg_model.setdefault('mask_decoder', {}).update(
        transformer_dims=dims,
        transformer=dict(
            depth=2,
            embed_dims=dims,
            num_heads=8 if dims == 256 else 2,
            mlp_dims=2048 if dims == 256 else 4 * dims,
        ),
        iou_head_hidden_dims=dims,
    )
    return cfg_model


def tiny_recipe(name: str, **train_cfg) -> Config:
    """A recipe config with the tiny model and a short prompt schedule."""
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    tiny_model_overrides(cfg.model)
    cfg.model.train_cfg.prompt_simulation.update(num_point_rounds=2, num_mask_only_rounds=1)
    cfg.model.train_cfg.update(train_cfg)
    return cfg


def write_tiny_train_config(
    path: Union[str, os.PathLike],
    data_root: str,
    *,
    epochs: int,
    batch: int,
    recipe: str = DECODER_FT,
    train_cfg: Optional[dict] = None,
    flip: float = 0.0,
    lr: float = 1e-4,
    test_prompts: str = 'point',
    val_interval: Optional[int] = None,
    extra: str = '',
) -> str:
    """Write a training config: a recipe of ``configs/sam/`` with the tiny SAM on a
    dataset of :func:`mmsam.testing.shapes_dataset.make_shapes_dataset`.

    Args:
        path: the config file to write.
        data_root: the dataset root (ending with ``/``).
        epochs: ``train_cfg.max_epochs``.
        batch: images per training batch (per process).
        recipe: the recipe's file name in ``configs/sam/``.
        train_cfg: the model's ``train_cfg`` (default: 3 instances per image, one point
            round and one mask-only round).
        flip: ``RandomFlip`` probability.
        lr: the optimizer's learning rate (no lr schedule).
        test_prompts: ``'point'`` (one click per instance, mIoU) or ``'box'`` (the
            ground-truth boxes) for validation and ``tools/test.py``.
        val_interval: epochs between validations (default: once, at the end).
        extra: more config lines, appended.

    Returns:
        str: ``path``.
    """
    model = tiny_model_overrides({}, for_merge=True)
    model['train_cfg'] = train_cfg or dict(
        max_instances_per_image=3,
        prompt_simulation=dict(num_point_rounds=1, num_mask_only_rounds=1),
    )
    prompts = {'point': 'PointPromptsFromGT', 'box': 'BoxPromptsFromGT'}[test_prompts]
    text = f"""
_base_ = [{osp.join(CONFIGS, recipe)!r}]
custom_imports = dict(imports=['mmsam.registration', 'mmsam.testing.training'],
                      allow_failed_imports=False)
model = {model!r}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='Resize', scale=({IMG_SIZE}, {IMG_SIZE}), keep_ratio=True),
    dict(type='RandomFlip', prob={flip}),
    dict(type='BoxPromptsFromGT'),
    dict(type='PackSAMInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'flip', 'flip_direction')),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type={prompts!r}),
    dict(type='PackSAMInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape')),
]
train_dataloader = dict(batch_size={batch}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={data_root!r}, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
_eval_data = dict(data_root={data_root!r}, ann_file='annotations/instances_val.json',
                  data_prefix=dict(img='val/'), pipeline=test_pipeline)
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=_eval_data)
test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=_eval_data)
train_cfg = dict(max_epochs={epochs}, val_interval={val_interval or epochs})
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr={lr}))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=-1, save_best=None))
log_processor = dict(window_size=1)
custom_hooks = [dict(type='PlainCheckpointHook'), dict(type='RecordLossHook')]
{extra}
"""
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def shapes_batch(seed: int = 0, num_images: int = 2, size=(40, 60)):
    """Images ``(3, H, W)`` uint8 with 2 rectangle instances each, as the model gets them."""
    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    h, w = size
    for i in range(num_images):
        img = rng.integers(0, 60, size=(3, h, w), dtype=np.uint8)
        masks = np.zeros((2, h, w), bool)
        masks[0, 5:20, 5:25] = True
        masks[1, 22:35, 30:55] = True
        img[:, masks[0]] = 200
        img[:, masks[1]] = 120
        sample = DetDataSample(metainfo=dict(img_id=i, img_path=f'img{i}.png'))
        sample.gt_instances = InstanceData(masks=torch.from_numpy(masks))
        inputs.append(torch.from_numpy(img))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@HOOKS.register_module()
class RecordLossHook(Hook):
    """Append each training iteration's losses of this process to a JSON-lines file.

    mmengine logs rank 0's losses only; tests compare the mean over the processes with a
    single-process run. Lines: ``{"iter": i, "loss": ..., ...}`` in
    ``{out_dir}/losses_rank{rank}.jsonl``.

    Args:
        out_dir (str, optional): Folder of the files. Defaults to ``{work_dir}/losses``.
    """

    def __init__(self, out_dir: Optional[str] = None) -> None:
        self.out_dir = out_dir

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        record = dict(iter=int(runner.iter))
        record.update({k: float(v) for k, v in (outputs or {}).items()})
        out_dir = self.out_dir or osp.join(runner.work_dir, 'losses')
        os.makedirs(out_dir, exist_ok=True)
        path = osp.join(out_dir, f'losses_rank{get_rank()}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')
