# Light HQ-SAM (TinyViT-5M) on COCO val2017 with one ground-truth box prompt per instance:
# mask AP (coco/segm_mAP...) and mIoU of the returned masks (coco/mIoU@1).
# Weights: --cfg-options load_from=sam_hq_vit_tiny.pth (official layout, converted on load).
_base_ = ['../mobile_sam/mobile-sam_tinyvit-5m_coco-val2017_box-prompt.py']

model = dict(mask_decoder=dict(type='SAMHQMaskDecoder', interm_dims=160, hq_token_only=False))
