# Fine-tune SAM ViT-B on COCO instances, the image encoder frozen: only the prompt
# encoder and the mask decoder (4M parameters) learn. The cheapest recipe: with the
# embedding cache (the -cache config) the encoder runs once per image (and flip).
# Start from SAM's weights:  --cfg-options load_from=sam_vit-base.pth  (mmsam layout,
# e.g. from tools/model_converters/sam2mmsam.py)
_base_ = [
    './sam_vit-base-p16_3rdparty_sa1b-1024px.py',
    '../_base_/datasets/coco_sam_finetune.py',
    '../_base_/schedules/sam_finetune_12e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    # all 12 layers, the embeddings and the neck frozen (and in eval mode)
    backbone=dict(frozen_stages=12),
    # SAM.loss: the SAM paper's simulated interactive training
    train_cfg=dict(
        max_instances_per_image=16,  # drawn at random from an image's instances
        prompt_simulation=dict(
            box_prob=0.5,  # first prompt: noisy box or one point inside the mask
            box_noise_ratio=0.1,  # noise std: 10% of the box side ...
            box_noise_max=20.0,  # ... at most 20 pixels
            num_point_rounds=8,  # corrective points drawn from the error region
            num_mask_only_rounds=2,  # rounds feeding back only the previous mask
        ),
        loss=dict(type='SAMMaskLoss'),  # focal:dice = 20:1 + IoU MSE
        embedding_cache=None,
    ),
)
# prompts differ between images (boxes or points, with or without padding points),
# so some prompt-encoder parameters may go unused in a step
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)

default_hooks = dict(
    logger=dict(type='MainProcessLoggerHook', interval=50),
    checkpoint=dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='coco/mIoU@1', rule='greater'
    ),
)
# checkpoints that torch.load(weights_only=True) reads (--resume, tools/test.py)
custom_hooks = [dict(type='PlainCheckpointHook')]
randomness = dict(seed=0)
