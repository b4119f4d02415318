# SAM ViT-H (the SAM paper's model) with the protocol of the ViT-B config it inherits.
_base_ = ['./sam_vit-base-p16_coco-val2017_5-click.py']

model = dict(backbone=dict(arch='huge'))
