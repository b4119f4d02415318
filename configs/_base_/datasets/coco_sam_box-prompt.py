# COCO val2017, one box prompt per ground-truth instance (its annotated box).
# Override the location with
#   --cfg-options test_dataloader.dataset.data_root=/path/to/coco/
# (the metrics read the annotation file from the dataset).
dataset_type = 'SAMCocoDataset'
data_root = 'data/coco/'
backend_args = None

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='BoxPromptsFromGT'),
    dict(type='PackSAMInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape')),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
# mask AP of the prompted masks (COCOeval, ranked by SAM's predicted IoU) and their mIoU
test_evaluator = [
    dict(type='SAMCocoMetric', metric='segm', backend_args=backend_args),
    dict(type='PromptMIoUMetric', prefix='coco'),
]
test_cfg = dict(type='TestLoop')
