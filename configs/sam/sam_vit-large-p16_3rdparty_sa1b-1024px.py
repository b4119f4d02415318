# SAM ViT-large (official weights converted from facebookresearch/segment-anything).
_base_ = ['../_base_/models/sam_vit-large.py']
