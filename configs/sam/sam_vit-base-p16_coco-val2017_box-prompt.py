# SAM ViT-B on COCO val2017 with one ground-truth box prompt per instance:
# mask AP (coco/segm_mAP...) and mIoU of the returned masks (coco/mIoU@1).
_base_ = [
    './sam_vit-base-p16_3rdparty_sa1b-1024px.py',
    '../_base_/datasets/coco_sam_box-prompt.py',
    '../_base_/default_runtime.py',
]
custom_imports = dict(
    imports=['mmsam', 'mmsam.datasets', 'mmsam.evaluation'], allow_failed_imports=False
)
