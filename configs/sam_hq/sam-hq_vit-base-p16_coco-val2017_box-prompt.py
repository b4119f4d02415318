# SAM-HQ ViT-B on COCO val2017 with one ground-truth box prompt per instance:
# mask AP (coco/segm_mAP...) and mIoU of the returned masks (coco/mIoU@1).
# Weights: --cfg-options load_from=sam_hq_vit_b.pth (official layout, converted on load).
_base_ = ['../sam/sam_vit-base-p16_coco-val2017_box-prompt.py']

model = dict(mask_decoder=dict(type='SAMHQMaskDecoder', interm_dims=768, hq_token_only=False))
