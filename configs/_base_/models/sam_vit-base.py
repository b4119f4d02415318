# Segment Anything with a ViT-B image encoder (official hyperparameters).
custom_imports = dict(imports=['mmsam.registration'], allow_failed_imports=False)
default_scope = 'mmdet'

image_size = 1024
embed_size = image_size // 16

model = dict(
    type='SAM',
    data_preprocessor=dict(
        type='SAMDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        image_size=image_size,
        # mmdet's LoadImageFromFile gives BGR; the predictor APIs pass RGB directly.
        bgr_to_rgb=True,
    ),
    backbone=dict(
        type='mmpretrain.SAMImageEncoder',
        arch='base',
        img_size=image_size,
        patch_size=16,
        out_channels=256,
        window_size=14,
        use_abs_pos=True,
        use_rel_pos=True,
    ),
    prompt_encoder=dict(
        type='SAMPromptEncoder',
        embed_dims=256,
        image_embedding_size=(embed_size, embed_size),
        input_image_size=(image_size, image_size),
        mask_in_channels=16,
    ),
    mask_decoder=dict(
        type='SAMMaskDecoder',
        transformer_dims=256,
        transformer=dict(depth=2, embed_dims=256, num_heads=8, mlp_dims=2048),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dims=256,
    ),
    mask_threshold=0.0,
    # multimask_output: 'auto' = the SAM paper's protocol (three outputs for a single
    # point, the single output for boxes and several points); True / False force it
    test_cfg=dict(multimask_output='auto', prompts_per_batch=64),
)
