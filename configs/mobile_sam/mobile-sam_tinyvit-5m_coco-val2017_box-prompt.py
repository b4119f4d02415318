# MobileSAM (TinyViT-5M) on COCO val2017 with one ground-truth box prompt per instance:
# mask AP (coco/segm_mAP...) and mIoU of the returned masks (coco/mIoU@1).
_base_ = [
    './mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px.py',
    '../_base_/datasets/coco_sam_box-prompt.py',
    '../_base_/default_runtime.py',
]

# The SAM paper's protocol: each box gets the single output (the decoder's output
# token 0), as for the published box-prompt numbers; True would pick the best of three
# outputs by predicted IoU (--cfg-options model.test_cfg.multimask_output=True).
model = dict(test_cfg=dict(multimask_output='auto'))
