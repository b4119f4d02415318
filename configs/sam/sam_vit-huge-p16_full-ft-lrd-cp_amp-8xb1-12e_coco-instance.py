# Full fine-tuning of SAM ViT-H with layer-wise lr decay, gradient checkpointing and
# bfloat16 mixed precision, one image per GPU.
_base_ = ['./sam_vit-large-p16_full-ft-lrd-cp_amp-8xb1-12e_coco-instance.py']

model = dict(backbone=dict(arch='huge'))
