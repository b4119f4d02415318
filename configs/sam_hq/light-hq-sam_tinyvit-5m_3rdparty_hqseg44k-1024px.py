# Light HQ-SAM (official weights converted from SysCV/sam-hq, sam_hq_vit_tiny.pth):
# MobileSAM's TinyViT-5M encoder with the HQ mask decoder; the early feature is the
# encoder's second stage output (160 channels at 1/16 of the input).
_base_ = ['../mobile_sam/mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px.py']

model = dict(
    mask_decoder=dict(type='SAMHQMaskDecoder', interm_dims=160, hq_token_only=False),
)
