# Fine-tune SAM ViT-B with LoRA (rank 16) on the image encoder's attention projections
# (qkv and proj) plus the full prompt encoder and mask decoder; every other encoder
# weight stays frozen.
# LoRA comes from mmpretrain's LoRAModel (mmpretrain.models.peft), not Hugging Face's
# peft: peft pulls in transformers, whose releases from 4.52 on break `import mmpretrain`
# (mmsam pins 4.51.3 for segment-by-text), while LoRAModel needs nothing beyond mmpretrain
# and keeps the OpenMMLab config / registry / checkpoint conventions. Its checkpoints hold the
# LoRA factors (backbone.module.*.lora_down/lora_up) and the decoder only: load the
# base SAM weights with load_from, as for training.
_base_ = ['./sam_vit-base-p16_decoder-ft_8xb2-12e_coco-instance.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SAMLoRAEncoder',
        module=dict(
            type='SAMImageEncoder',
            arch='base',
            img_size={{_base_.image_size}},
            patch_size=16,
            out_channels=256,
            window_size=14,
        ),
        alpha=16,
        rank=16,
        drop_rate=0.1,
        targets=[dict(type='attn.qkv'), dict(type='attn.proj')],
    )
)
