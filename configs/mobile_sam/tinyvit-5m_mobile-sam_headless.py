# MobileSAM's TinyViT-5M image encoder as a headless mmpretrain model (feature extraction).
custom_imports = dict(imports=['mmsam.registration'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    type='ImageClassifier',
    backbone=dict(type='SAMTinyViT', arch='5m', img_size=1024, out_channels=256, fused=True),
    neck=None,
    head=None,
)

data_preprocessor = dict(
    # RGB mean and std of SAM
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # images loaded by mmcv are BGR
    to_rgb=True,
)
