# EfficientViT-SAM-L0 on COCO val2017 with one ground-truth box prompt per instance:
# mask AP (coco/segm_mAP...) and mIoU of the returned masks (coco/mIoU@1).
_base_ = [
    './efficientvit-sam_l0_3rdparty_sa1b-512px.py',
    '../_base_/datasets/coco_sam_box-prompt.py',
    '../_base_/default_runtime.py',
]

# The SAM paper's protocol: each box gets the single output (the decoder's output token 0).
model = dict(test_cfg=dict(multimask_output='auto'))
