# SAM ViT-base (official weights converted from facebookresearch/segment-anything).
_base_ = ['../_base_/models/sam_vit-base.py']
