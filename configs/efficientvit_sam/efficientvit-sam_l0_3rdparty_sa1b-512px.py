# EfficientViT-SAM-L0 (official weights converted from mit-han-lab/efficientvit): an
# EfficientViT-L0 encoder on 512 px inputs, SAM's prompt encoder and mask decoder in the
# 1024 px frame. The reference sets every norm's epsilon to 1e-6, the decoder's too.
_base_ = ['../_base_/models/sam_vit-base.py']

model = dict(
    data_preprocessor=dict(
        # the official SamResize + SamPad: longest side 512, padded to 512 x 512
        encoder_image_size=512,
    ),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SAMEfficientViT',
        arch='l0',
        img_size=1024,
        input_size=512,
        out_channels=256,
    ),
    mask_decoder=dict(transformer=dict(norm_eps=1e-6)),
)
