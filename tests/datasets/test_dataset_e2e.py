"""tools/test.py on a user's COCO-format file (non-COCO names), on a file with nothing to
prompt, and with the LVIS config on a small LVIS v1 file, with a tiny random-weight SAM.

The numbers themselves are checked against COCOeval / LVISEval in
tests/evaluation/test_metrics.py; here the evaluation configs run end to end.
"""

import json

import pytest

from mmsam.testing.coco_fixture import make_coco_fixture, make_lvis_fixture
from mmsam.testing.eval_runs import run_test_script, write_tiny_eval_config
from mmsam.testing.parity import build_official_sam
from mmsam.utils.checkpoint_io import save_checkpoint
from mmsam.utils.checkpoint_keys import convert_official_to_mmsam

BOX = 'sam_vit-base-p16_coco-val2017_box-prompt.py'
LVIS = 'sam_vit-base-p16_lvis-v1-val_det-box-prompt.py'
IMG_SIZE, WINDOW = 64, 4


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    official = build_official_sam('tiny', img_size=IMG_SIZE, window_size=WINDOW, seed=0)
    path = str(tmp_path_factory.mktemp('ckpt') / 'sam_tiny.pth')
    save_checkpoint(convert_official_to_mmsam(official.state_dict()), path)
    return path


def _config(path, base, dataset):
    """A config file: ``base`` with the tiny SAM and ``dataset`` merged into its dataset."""
    return write_tiny_eval_config(path, base, IMG_SIZE, WINDOW, dataset=dataset)


def _test_py(config, checkpoint, work_dir):
    """Exit code, output and the metrics JSON of one tools/test.py run (one thread)."""
    return run_test_script([config, checkpoint], str(work_dir))


def test_non_coco_category_names_are_evaluated_in_full(tmp_path, checkpoint):
    categories = [dict(id=10, name='tumor'), dict(id=20, name='building'), dict(id=35, name='road')]
    data = make_coco_fixture(str(tmp_path / 'data'), bad_entries=False, categories=categories)
    config = _config(tmp_path / 'box.py', BOX, dict(data_root=data['data_root'] + '/'))
    code, out, metrics = _test_py(config, checkpoint, tmp_path / 'work')
    assert code == 0, out[-3000:]
    assert metrics['coco/num_instances'] == 9  # every shape of the three categories
    assert 0.0 <= metrics['coco/mIoU@1'] <= 1.0 and 0.0 <= metrics['coco/segm_mAP'] <= 1.0


def test_nothing_to_prompt_exits_non_zero_with_the_reasons(tmp_path, checkpoint):
    data = make_coco_fixture(str(tmp_path / 'data'), bad_entries=True)
    dataset = dict(data_root=data['data_root'] + '/', metainfo=dict(classes=['not_a_coco_class']))
    config = _config(tmp_path / 'box.py', BOX, dataset)
    code, out, metrics = _test_py(config, checkpoint, tmp_path / 'work')
    assert code != 0 and metrics is None
    assert 'nothing to prompt' in out and '0 instances to prompt' in out
    assert "annotations of categories outside the dataset's classes" in out
    assert data['ann_file'] in out


def test_lvis_config_gives_lvis_mask_ap(tmp_path, checkpoint):
    data = make_lvis_fixture(str(tmp_path / 'lvis'))
    with open(data['ann_file']) as f:
        anns = json.load(f)['annotations']
    # a "detector" that finds every instance, with decreasing scores
    dets = [
        dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'], score=s)
        for a, s in zip(anns, [0.9 - 0.05 * i for i in range(len(anns))])
    ]
    det_file = tmp_path / 'lvis_dets.bbox.json'
    det_file.write_text(json.dumps(dets))
    dataset = dict(data_root=data['data_root'] + '/', det_prompt_file=str(det_file))
    config = _config(tmp_path / 'lvis.py', LVIS, dataset)
    code, out, metrics = _test_py(config, checkpoint, tmp_path / 'work')
    assert code == 0, out[-3000:]
    assert f'{len(dets)} of {len(dets)} detections used as box prompts' in out
    assert f'SAMLVISMetric segm (3 images, {len(dets)} predictions)' in out
    for item in ('AP', 'AP50', 'APr', 'APc', 'APf'):
        assert 0.0 <= metrics[f'lvis/segm_{item}'] <= 1.0
