# Full fine-tuning of SAM ViT-B (encoder, prompt encoder and decoder) with layer-wise
# learning-rate decay: layer i of the encoder learns at lr * 0.8 ** (13 - i - 1)
# (mmpretrain's LearningRateDecayOptimWrapperConstructor through
# SAM.get_layer_depth), the decoder at lr; no weight decay on position tables.
# Mixed precision: tools/train.py --amp (AmpOptimWrapper); see the ViT-L/H configs.
_base_ = ['./sam_vit-base-p16_decoder-ft_8xb2-12e_coco-instance.py']

model = dict(backbone=dict(frozen_stages=-1, drop_path_rate=0.1, with_cp=False))
optim_wrapper = dict(
    constructor='mmpretrain.LearningRateDecayOptimWrapperConstructor',
    optimizer=dict(lr=1e-4, weight_decay=0.1),
    paramwise_cfg=dict(
        layer_decay_rate=0.8,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),
            'rel_pos': dict(decay_mult=0.0),
        },
    ),
)
