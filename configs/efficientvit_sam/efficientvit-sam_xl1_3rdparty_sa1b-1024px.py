# EfficientViT-SAM-XL1: an EfficientViT-XL1 encoder on 1024 px inputs (see the L0 config).
_base_ = ['./efficientvit-sam_xl0_3rdparty_sa1b-1024px.py']

model = dict(backbone=dict(arch='xl1'))
