# EfficientViT-SAM-XL0: an EfficientViT-XL0 encoder on 1024 px inputs (see the L0 config).
_base_ = ['./efficientvit-sam_l0_3rdparty_sa1b-512px.py']

model = dict(
    data_preprocessor=dict(encoder_image_size=1024),
    backbone=dict(arch='xl0', input_size=1024),
)
