# SAM ViT-B on LVIS v1 val with a detector's boxes as prompts (the SAM paper's
# zero-shot instance segmentation): mask AP, masks ranked by the detection scores.
_base_ = [
    './sam_vit-base-p16_3rdparty_sa1b-1024px.py',
    '../_base_/datasets/lvis_v1_sam_det-box-prompt.py',
    '../_base_/default_runtime.py',
]

# The SAM paper's protocol: each detector box gets the single output (the decoder's
# output token 0); True would pick the best of three outputs by predicted IoU.
model = dict(test_cfg=dict(multimask_output='auto'))
