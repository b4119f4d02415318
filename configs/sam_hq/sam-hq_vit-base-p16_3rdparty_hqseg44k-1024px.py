# SAM-HQ ViT-B (official weights converted from SysCV/sam-hq): SAM ViT-B with the HQ mask
# decoder (HQ output token fusing the encoder's early feature, the first global-attention
# block's output, with the final embedding).
_base_ = ['../sam/sam_vit-base-p16_3rdparty_sa1b-1024px.py']

model = dict(
    mask_decoder=dict(
        type='SAMHQMaskDecoder',
        interm_dims=768,  # channels of the early feature: the ViT's width
        # True: the HQ output alone; False (official default): SAM's output + HQ output
        hq_token_only=False,
    ),
)
