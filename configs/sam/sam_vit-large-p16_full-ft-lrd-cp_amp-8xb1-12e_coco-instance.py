# Full fine-tuning of SAM ViT-L with layer-wise lr decay, gradient checkpointing of
# every encoder layer (with_cp) and bfloat16 mixed precision (AmpOptimWrapper), one
# image per GPU.
_base_ = ['./sam_vit-base-p16_full-ft-lrd_8xb2-12e_coco-instance.py']

model = dict(backbone=dict(arch='large', with_cp=True))
optim_wrapper = dict(
    type='AmpOptimWrapper', dtype='bfloat16', paramwise_cfg=dict(layer_decay_rate=0.9)
)
train_dataloader = dict(batch_size=1)
auto_scale_lr = dict(base_batch_size=8)
