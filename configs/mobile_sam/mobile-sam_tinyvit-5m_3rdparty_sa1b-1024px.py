# MobileSAM (TinyViT-5M encoder; official weights converted from ChaoningZhang/MobileSAM).
_base_ = ['../_base_/models/mobile-sam_tinyvit-5m.py']
