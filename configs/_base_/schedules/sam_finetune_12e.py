# 12 epochs of AdamW for fine-tuning SAM: the SAM paper's optimizer (AdamW,
# betas (0.9, 0.999), weight decay 0.1, 250 iterations of linear warm-up, step decay)
# at a fine-tuning learning rate, with gradient clipping.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=dict(max_norm=1.0, norm_type=2),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=12, milestones=[8, 11], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
# the learning rate above is for 8 GPUs x 2 images; tools/train.py --auto-scale-lr
auto_scale_lr = dict(enable=False, base_batch_size=16)
