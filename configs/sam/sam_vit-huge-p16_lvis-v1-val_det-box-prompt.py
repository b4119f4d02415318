# SAM ViT-H (the SAM paper's model) with the protocol of the ViT-B config it inherits.
_base_ = ['./sam_vit-base-p16_lvis-v1-val_det-box-prompt.py']

model = dict(backbone=dict(arch='huge'))
