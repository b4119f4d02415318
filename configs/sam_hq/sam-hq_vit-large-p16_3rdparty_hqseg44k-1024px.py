# SAM-HQ ViT-L (official weights converted from SysCV/sam-hq).
_base_ = ['./sam-hq_vit-base-p16_3rdparty_hqseg44k-1024px.py']

model = dict(backbone=dict(arch='large'), mask_decoder=dict(interm_dims=1024))
