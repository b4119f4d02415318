# COCO val2017, one positive click per ground-truth instance at the point farthest
# from the mask boundary (the SAM paper's single-point protocol); InteractiveSAM adds
# the next clicks. Override the location with
#   --cfg-options test_dataloader.dataset.data_root=/path/to/coco/
_base_ = ['./coco_sam_box-prompt.py']

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='PointPromptsFromGT'),
    dict(type='PackSAMInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape')),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# mIoU per click, of the returned mask (highest predicted IoU) and of the oracle
test_evaluator = [dict(type='PromptMIoUMetric', prefix='coco')]
