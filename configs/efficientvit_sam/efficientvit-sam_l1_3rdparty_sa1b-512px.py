# EfficientViT-SAM-L1: EfficientViT-L1 encoder on 512 px inputs (see the L0 config).
_base_ = ['./efficientvit-sam_l0_3rdparty_sa1b-512px.py']

model = dict(backbone=dict(arch='l1'))
