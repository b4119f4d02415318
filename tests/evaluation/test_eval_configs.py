"""The evaluation configs parse, name registered parts, and build their full-size models."""

import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import mmsam.registration  # noqa: F401  (registers the modules)

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
# the evaluation configs (``*_coco-instance.py`` are fine-tuning configs, tested elsewhere)
EVAL_CONFIGS = sorted(
    glob.glob(osp.join(CONFIGS, 'sam', '*_coco-val2017_*.py'))
    + glob.glob(osp.join(CONFIGS, 'sam', '*_lvis-v1-val_*.py'))
)


def test_the_four_protocols_have_configs():
    names = {osp.basename(p) for p in EVAL_CONFIGS}
    assert {
        'sam_vit-base-p16_coco-val2017_box-prompt.py',
        'sam_vit-base-p16_coco-val2017_1-point.py',
        'sam_vit-base-p16_coco-val2017_5-click.py',
        'sam_vit-base-p16_lvis-v1-val_det-box-prompt.py',
    } <= names


def test_registration_brings_the_evaluation_parts():
    """What the configs' ``custom_imports = ['mmsam.registration']`` imports."""
    import mmsam.datasets
    import mmsam.evaluation

    assert mmsam.registration.datasets is mmsam.datasets
    assert mmsam.registration.evaluation is mmsam.evaluation


@pytest.mark.parametrize('path', EVAL_CONFIGS, ids=osp.basename)
def test_eval_config_parts_are_registered(path):
    from mmdet.registry import DATASETS, METRICS, MODELS, TRANSFORMS

    import mmsam.datasets  # noqa: F401
    import mmsam.evaluation  # noqa: F401

    cfg = Config.fromfile(path)
    # mmsam.registration registers the datasets, transforms and metrics too
    # (test_registration_brings_the_evaluation_parts)
    assert cfg.default_scope == 'mmdet' and 'mmsam.registration' in cfg.custom_imports.imports
    dataset = cfg.test_dataloader.dataset
    assert DATASETS.get(dataset.type) is not None
    assert all(TRANSFORMS.get(t.type) is not None for t in dataset.pipeline)
    evaluators = cfg.test_evaluator
    evaluators = evaluators if isinstance(evaluators, list) else [evaluators]
    assert all(METRICS.get(e.type) is not None for e in evaluators)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert model.image_size == 1024 and model.data_preprocessor.bgr_to_rgb
    # the SAM paper's prompt protocol: three outputs for a single point only
    assert model.test_cfg['multimask_output'] == 'auto' and model.num_mask_outputs == 3
    if '5-click' in path:
        assert type(model).__name__ == 'InteractiveSAM' and model.num_clicks == 5
