"""tools/test.py and mmengine's runner load checkpoints like ``mmsam.get_model``.

The same random weights saved in every layout mmsam reads (official, Hugging Face
``.bin`` and ``.safetensors``, mmsam) must evaluate to identical metrics; a checkpoint
that does not fit the config (another network, another size, an encoder alone) must
stop ``tools/test.py`` with a non-zero exit code, the file name and the key lists,
before any image is read.
"""

import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmsam.testing.coco_fixture import make_coco_fixture
from mmsam.testing.eval_runs import REPO, run_test_script, write_tiny_eval_config
from mmsam.testing.hf_layout import official_to_hf_state_dict
from mmsam.testing.parity import build_official_sam, sam_model_cfg
from mmsam.utils.checkpoint_io import CheckpointLoadError, CheckpointMismatchError

pytest.importorskip('segment_anything')
safetensors_torch = pytest.importorskip('safetensors.torch')

BOX_CONFIG = osp.join(REPO, 'configs', 'sam', 'sam_vit-base-p16_coco-val2017_box-prompt.py')
IMG_SIZE, WINDOW, SEED = 128, 4, 0

# Runs tools/test.py with image decoding disabled: a run that reads an image fails with
# 'IMAGE READ' instead of reaching the checkpoint error later.
NO_IMAGES = """
import runpy, sys
import mmcv.transforms
def refuse(self, results):
    raise AssertionError('IMAGE READ before the checkpoint was refused')
mmcv.transforms.LoadImageFromFile.transform = refuse
sys.argv = ['tools/test.py'] + sys.argv[1:]
runpy.run_path('tools/test.py', run_name='__main__')
"""


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """The same seeded tiny SAM in every layout, a config and a small COCO set."""
    tmp = tmp_path_factory.mktemp('ckpt_layouts')
    data = make_coco_fixture(str(tmp / 'coco'), seed=SEED, bad_entries=False)
    official = build_official_sam('tiny', img_size=IMG_SIZE, window_size=WINDOW, seed=SEED)
    state = {k: v.detach().clone() for k, v in official.state_dict().items()}
    out = dict(
        tmp=tmp,
        config=write_tiny_eval_config(
            tmp / 'box.py', BOX_CONFIG, IMG_SIZE, WINDOW, data_root=data['data_root'] + '/'
        ),
    )
    out['official'] = str(tmp / 'sam_official.pth')
    torch.save(state, out['official'])
    hf = official_to_hf_state_dict(state)
    out['hf_bin'] = str(tmp / 'pytorch_model.bin')
    torch.save(dict(hf), out['hf_bin'])
    # save_pretrained keeps one copy of the tied random-Fourier matrix
    tied = official_to_hf_state_dict(state, positional='model')
    out['hf_safetensors'] = str(tmp / 'model.safetensors')
    safetensors_torch.save_file({k: v.contiguous() for k, v in tied.items()}, out['hf_safetensors'])
    # the converter's output (mmsam layout), written by the documented tool
    out['mmsam'] = str(tmp / 'sam_mmsam.pth')
    proc = subprocess.run(
        [sys.executable, 'tools/model_converters/sam2mmsam.py', out['official'], out['mmsam']],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # an unrelated network: a few conv weights under backbone.
    torch.manual_seed(SEED)
    out['foreign'] = str(tmp / 'resnet.pth')
    torch.save({'state_dict': {'backbone.conv1.weight': torch.randn(8, 3, 3, 3)}}, out['foreign'])
    # the right layout, another size: a tiny SAM with a wider encoder
    wide = build_official_sam(
        dict(
            embed_dims=48,
            num_layers=2,
            num_heads=2,
            feedforward_channels=96,
            global_attn_indexes=[1],
        ),
        img_size=IMG_SIZE,
        window_size=WINDOW,
        seed=SEED,
    )
    out['wrong_size'] = str(tmp / 'sam_wide.pth')
    torch.save(wide.state_dict(), out['wrong_size'])
    # an image encoder alone (what --backbone-only writes): no prompt encoder / decoder
    out['encoder_only'] = str(tmp / 'encoder_only.pth')
    torch.save(
        {k: v for k, v in state.items() if k.startswith('image_encoder.')}, out['encoder_only']
    )
    return out


def _env():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env['OMP_NUM_THREADS'] = '1'
    return env


def _test_script(files, checkpoint, name, no_images=False):
    work_dir = str(files['tmp'] / f'work_{name}')
    dump = osp.join(work_dir, 'predictions.pkl')
    args = [files['config'], checkpoint, '--out', dump]
    command = [sys.executable, '-c', NO_IMAGES] if no_images else None
    code, out, metrics = run_test_script(args, work_dir, command=command)
    if metrics is not None:
        metrics = {k: v for k, v in metrics.items() if k.startswith('coco/')}
        with open(dump, 'rb') as f:
            metrics['predictions'] = pickle.load(f)
    return code, out, metrics


def _same(a, b) -> bool:
    """Deep equality of metric dicts and dumped predictions (arrays compared exactly)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_every_layout_gives_identical_metrics(files):
    """tools/test.py on a Hugging Face file, the converter's output and the official file
    of the same weights: the same metrics and the same masks, scores and logits."""
    results = {}
    for layout in ('official', 'hf_safetensors', 'mmsam'):
        code, out, metrics = _test_script(files, files[layout], layout)
        assert code == 0, out
        assert metrics, out
        results[layout] = metrics
    reference = results['official']
    assert reference['coco/num_instances'] > 0 and reference['coco/mIoU@1'] > 0, reference
    assert len(reference['predictions']) == 3  # the fixture's images
    for layout, metrics in results.items():
        assert _same(metrics, reference), layout


@pytest.mark.parametrize(
    'name, expected',
    [
        ('foreign', r'not a SAM state dict.*backbone\.conv1\.weight'),
        ('wrong_size', r'does not fit the model.*shape mismatches'),
        ('encoder_only', r'does not fit the model.*image encoder only.*missing keys'),
    ],
)
def test_a_checkpoint_that_does_not_fit_stops_before_any_image(files, name, expected):
    code, out, metrics = _test_script(files, files[name], name, no_images=True)
    assert code != 0, out
    assert 'IMAGE READ' not in out, out
    assert metrics is None
    error = [line for line in out.splitlines() if line.startswith('error:')]
    assert error, out
    assert files[name] in error[-1]
    assert re.search(expected, error[-1]), error[-1]
    assert 'Traceback' not in out, out


# ----------------------------------------------------------------- in-process paths
def _tiny_sam():
    from mmdet.registry import MODELS

    import mmsam

    mmsam.register_all_modules()
    torch.manual_seed(SEED)
    return MODELS.build(sam_model_cfg('tiny', img_size=IMG_SIZE, window_size=WINDOW)).eval()


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_runner_load_from_goes_through_the_strict_loader(files, tmp_path):
    """A config's load_from, in SAMRunner: any layout loads; a misfit stops the run."""
    from mmengine.registry import DefaultScope

    from mmsam.engine import SAMRunner
    from mmsam.utils.checkpoint_loader import load_checkpoint_to_model

    expected = _tiny_sam()
    load_checkpoint_to_model(expected, files['official'])
    cfg = Config.fromfile(files['config'])
    cfg.work_dir = str(tmp_path / 'work')
    # the runner sets mmengine's global default scope: restored when the block ends
    with DefaultScope.overwrite_default_scope('mmdet'):
        for name in ('hf_bin', 'hf_safetensors', 'official'):
            cfg.load_from = files[name]
            cfg.experiment_name = f'load_{name}'
            runner = SAMRunner.from_cfg(cfg)
            runner.load_or_resume()
            got = runner.model.state_dict()
            for key, value in expected.state_dict().items():
                assert torch.equal(got[key], value), (name, key)
        for name in ('foreign', 'wrong_size'):
            cfg.load_from = files[name]
            cfg.experiment_name = f'load_{name}'
            runner = SAMRunner.from_cfg(cfg)
            with pytest.raises(CheckpointLoadError, match=re.escape(files[name])):
                runner.load_or_resume()


def test_model_load_state_dict_takes_foreign_layouts(files):
    """SAM.load_state_dict converts official and Hugging Face keys (strict stays strict)."""
    from mmsam.utils.checkpoint_loader import load_checkpoint_to_model

    reference = _tiny_sam()
    load_checkpoint_to_model(reference, files['mmsam'])
    for name in ('official', 'hf_bin'):
        model = _tiny_sam()
        model.load_state_dict(torch.load(files[name], weights_only=True), strict=True)
        for key, value in reference.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), (name, key)
    model = _tiny_sam()
    with pytest.raises(RuntimeError, match='Missing key'):
        model.load_state_dict(torch.load(files['encoder_only'], weights_only=True), strict=True)


def test_loader_refuses_and_leaves_the_model_untouched(files):
    from mmsam.utils.checkpoint_loader import load_checkpoint_to_model

    model = _tiny_sam()
    before = _params(model)
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        load_checkpoint_to_model(model, files['wrong_size'])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_garbage_file_message_never_suggests_unpickling(tmp_path):
    from mmsam.utils.checkpoint_io import load_checkpoint_file

    text = tmp_path / 'garbage.pth'
    text.write_bytes(b'this is not a checkpoint at all\n' * 4)
    pickled = tmp_path / 'pickled.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'meta': {'obj': object()}}, pickled)
    for path in (text, pickled):
        with pytest.raises(CheckpointLoadError) as info:
            load_checkpoint_file(str(path))
        message = str(info.value)
        assert str(path) in message
        assert 'weights_only=False' not in message and 'weights_only' not in message, message
