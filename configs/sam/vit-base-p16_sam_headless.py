# SAM's ViT-B image encoder as a headless mmpretrain model (feature extraction).
custom_imports = dict(imports=['mmsam.registration'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SAMImageEncoder',
        arch='base',
        img_size=1024,
        patch_size=16,
        out_channels=256,
        use_abs_pos=True,
        use_rel_pos=True,
        window_size=14,
    ),
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
