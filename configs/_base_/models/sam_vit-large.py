# Segment Anything with a ViT-L image encoder.
_base_ = ['./sam_vit-base.py']

model = dict(backbone=dict(arch='large'))
