# LVIS v1 val with box prompts from a detector's COCO-style results JSON
# ([{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...], e.g. the
# *.bbox.json that mmdet's CocoMetric/LVISMetric writes with format_only=True),
# the SAM paper's instance-segmentation protocol. Needs the `lvis` package
# (requirements/optional.txt; see mmsam/datasets/lvis_api.py).
# Override the locations with --cfg-options
#   test_dataloader.dataset.data_root=/path/to/lvis_v1/
#   test_dataloader.dataset.det_prompt_file=/path/to/detections.bbox.json
# (the metric reads the dataset's annotation file). The categories are the file's.
_base_ = ['./coco_sam_box-prompt.py']  # the data loader settings

dataset_type = 'SAMLVISV1Dataset'
data_root = 'data/lvis_v1/'

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='DetectorBoxPrompts', max_per_img=300),
    dict(type='PackSAMInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape')),
]
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/lvis_v1_val.json',
        data_prefix=dict(img=''),
        det_prompt_file='detections/lvis_v1_val.bbox.json',
        det_score_thr=0.0,
        test_mode=True,
        pipeline=test_pipeline,
        backend_args={{_base_.backend_args}},
    )
)
# mask AP; each mask ranked by its box's detection score
test_evaluator = [
    dict(
        type='SAMLVISMetric',
        metric='segm',
        score_source='prompt',
        backend_args={{_base_.backend_args}},
    )
]
