# Fine-tuning SAM on a COCO-format instance dataset: train on train2017's instance
# masks (class-agnostic: SAM learns masks, not classes), validate with one click per
# instance on val2017 (mIoU, the SAM paper's point protocol). Any COCO-format file
# works; override the location with
#   --cfg-options train_dataloader.dataset.data_root=D val_dataloader.dataset.data_root=D
# SA-1B folders: convert them to one COCO file first (mmsam.apis.read_sa1b reads them).
_base_ = ['./coco_sam_point-prompt.py']

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    # longest side to the model's input size (1024) here, so that the masks are not kept
    # at full resolution; SAMDataPreprocessor then only normalizes and pads
    dict(type='Resize', scale=(1024, 1024), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    # instances whose mask vanished in the resize are dropped by the loss
    dict(type='BoxPromptsFromGT'),
    dict(
        type='PackSAMInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'flip', 'flip_direction'),
    ),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        type={{_base_.dataset_type}},
        data_root={{_base_.data_root}},
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        pipeline=train_pipeline,
        backend_args={{_base_.backend_args}},
    ),
)
val_dataloader = {{_base_.test_dataloader}}
val_evaluator = [dict(type='PromptMIoUMetric', prefix='coco')]
