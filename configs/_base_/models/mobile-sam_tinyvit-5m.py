# MobileSAM: SAM's prompt encoder and mask decoder on a TinyViT-5M image encoder
# (the official hyperparameters of mobile_sam.build_sam_vit_t).
_base_ = ['./sam_vit-base.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SAMTinyViT',
        arch='5m',
        img_size=1024,
        out_channels=256,
        # the fused inference path (folded batch norms, SDPA); False runs the modules as is
        fused=True,
    ),
)
