# SAM ViT-B on COCO val2017, interactive: 1 to 5 simulated clicks per instance, each
# next click at the point farthest from the boundary of the larger error region
# (positive in a missed region, negative in a false one), the previous low-resolution
# logits fed back as mask input: coco/mIoU@1..5 and coco/oracle_mIoU@1..5.
_base_ = ['./sam_vit-base-p16_coco-val2017_1-point.py']

# The SAM paper's protocol ('auto', from the 1-point config): click 1 gets the three
# multimask outputs, clicks 2..5 the single output token; True would pick the best of
# three by predicted IoU after every click.
model = dict(type='InteractiveSAM', num_clicks=5, test_cfg=dict(multimask_output='auto'))
