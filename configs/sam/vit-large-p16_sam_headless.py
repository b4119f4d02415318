# SAM's ViT-large image encoder as a headless mmpretrain model (feature extraction).
_base_ = ['./vit-base-p16_sam_headless.py']

model = dict(backbone=dict(arch='large'))
