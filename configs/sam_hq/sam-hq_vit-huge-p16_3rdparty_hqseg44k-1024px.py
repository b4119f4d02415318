# SAM-HQ ViT-H (official weights converted from SysCV/sam-hq).
_base_ = ['./sam-hq_vit-base-p16_3rdparty_hqseg44k-1024px.py']

model = dict(backbone=dict(arch='huge'), mask_decoder=dict(interm_dims=1280))
