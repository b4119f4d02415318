# Segment Anything with a ViT-H image encoder.
_base_ = ['./sam_vit-base.py']

model = dict(backbone=dict(arch='huge'))
