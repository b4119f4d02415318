# SAM ViT-B on COCO val2017, interactive: 1 to 5 simulated clicks per instance, each
# next click at the point farthest from the boundary of the larger error region
# (positive in a missed region, negative in a false one), the previous low-resolution
# logits fed back as mask input: coco/mIoU@1..5 and coco/oracle_mIoU@1..5.
_base_ = ['./sam_vit-base-p16_coco-val2017_1-point.py']

model = dict(type='InteractiveSAM', num_clicks=5)
