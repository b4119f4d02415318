"""tools/train.py end to end: a tiny SAM on a synthetic shapes dataset.

* two processes (tools/dist_train.sh, gloo on the CPU) with one image each follow the
  loss curve and end at the weights of one process with two images;
* --resume from the epoch-1 checkpoint continues exactly (losses and final weights).
"""

import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmsam.registration  # noqa: F401
from mmsam.testing.shapes_dataset import make_shapes_dataset
from mmsam.testing.training import REPO, write_tiny_train_config
from mmsam.utils.checkpoint_io import load_checkpoint_file, save_checkpoint

SIZE = (96, 128)


def _run(cmd, env_extra=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env['OMP_NUM_THREADS'] = '1'
    env.update(env_extra or {})
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def _losses(work_dir):
    """{iter: mean over the processes of the recorded loss}."""
    per_iter = {}
    for path in glob.glob(osp.join(work_dir, 'losses', 'losses_rank*.jsonl')):
        for line in open(path):
            rec = json.loads(line)
            per_iter.setdefault(rec['iter'], []).append(rec['loss'])
    return {k: sum(v) / len(v) for k, v in sorted(per_iter.items())}


def _weights(path):
    state, _ = load_checkpoint_file(path)
    return state


def _assert_same_weights(a, b, atol, skip_key_biases=False):
    assert a.keys() == b.keys()
    for key in a:
        if skip_key_biases and key.endswith('k_proj.bias'):
            # softmax ignores a key bias: its true gradient is 0 and Adam turns the
            # rounding noise left there into lr-sized steps of either sign
            continue
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('train_tool')
    data = make_shapes_dataset(str(tmp / 'shapes'), num_train=8, num_val=6, size=SIZE, seed=0)
    cfg = Config.fromfile(
        write_tiny_train_config(tmp / 'init.py', data['data_root'], epochs=1, batch=1)
    )
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    checkpoint = str(tmp / 'init.pth')
    save_checkpoint(model.state_dict(), checkpoint)
    return dict(tmp=tmp, root=data['data_root'] + '/', checkpoint=checkpoint)


def _train(setup, name, cfg_path, *extra, nproc=1):
    work_dir = str(setup['tmp'] / name)
    shutil.rmtree(work_dir, ignore_errors=True)
    args = ['--work-dir', work_dir, '--cfg-options', f'load_from={setup["checkpoint"]}']
    if nproc == 1:
        _run([sys.executable, 'tools/train.py', cfg_path, *args, *extra])
    else:
        env = dict(PYTHON=sys.executable, PORT=str(29600 + os.getpid() % 1000))
        _run(['bash', 'tools/dist_train.sh', cfg_path, str(nproc), *args, *extra], env)
    return work_dir


def test_two_processes_match_one_and_resume_is_exact(setup):
    tmp = setup['tmp']
    one = write_tiny_train_config(tmp / 'one.py', setup['root'], epochs=2, batch=2)
    two = write_tiny_train_config(tmp / 'two.py', setup['root'], epochs=2, batch=1)
    single = _train(setup, 'single', one)
    double = _train(setup, 'double', two, nproc=2)
    curve1, curve2 = _losses(single), _losses(double)
    assert len(curve1) == 8 and curve1.keys() == curve2.keys()  # 8 images / 2 per step x 2
    for it in curve1:
        assert curve2[it] == pytest.approx(curve1[it], rel=1e-5, abs=1e-6), it
    assert len(set(round(v, 4) for v in curve1.values())) > 1
    final1 = _weights(osp.join(single, 'epoch_2.pth'))
    _assert_same_weights(
        final1, _weights(osp.join(double, 'epoch_2.pth')), atol=1e-5, skip_key_biases=True
    )

    # resume from the epoch-1 checkpoint of the single run, in a fresh work dir
    resumed = str(tmp / 'resumed')
    shutil.rmtree(resumed, ignore_errors=True)
    os.makedirs(resumed)
    shutil.copy(osp.join(single, 'epoch_1.pth'), osp.join(resumed, 'epoch_1.pth'))
    _run(
        [sys.executable, 'tools/train.py', one, '--work-dir', resumed]
        + ['--resume', osp.join(resumed, 'epoch_1.pth')]
    )
    curve3 = _losses(resumed)
    assert sorted(curve3) == [it for it in curve1 if it >= 4]  # epoch 2: iterations 4-7
    for it in curve3:
        assert curve3[it] == curve1[it], it
    _assert_same_weights(final1, _weights(osp.join(resumed, 'epoch_2.pth')), atol=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason='--amp uses AmpOptimWrapper on a GPU')
def test_amp_on_the_cpu_trains_with_bfloat16_autocast(setup):
    """mmengine's AmpOptimWrapper refuses a CPU-only machine: --amp there means bfloat16
    autocast without loss scaling (CPUAmpOptimWrapper); the run trains and saves."""
    cfg_path = write_tiny_train_config(setup['tmp'] / 'amp.py', setup['root'], epochs=1, batch=2)
    work_dir = str(setup['tmp'] / 'amp')
    shutil.rmtree(work_dir, ignore_errors=True)
    args = ['--work-dir', work_dir, '--amp', '--cfg-options', f'load_from={setup["checkpoint"]}']
    out = _run([sys.executable, 'tools/train.py', cfg_path, *args])
    assert 'AMP on the CPU: bfloat16 autocast' in out
    dumped = Config.fromfile(osp.join(work_dir, 'amp.py'))
    assert dumped.optim_wrapper.type == 'CPUAmpOptimWrapper'
    assert 'loss_scale' not in dumped.optim_wrapper
    curve = _losses(work_dir)
    assert len(curve) == 4 and all(0 < v < 100 for v in curve.values())  # 8 images / 2
    trained = _weights(osp.join(work_dir, 'epoch_1.pth'))
    start = _weights(setup['checkpoint'])
    assert not torch.equal(
        trained['mask_decoder.output_upscaling.0.weight'],
        start['mask_decoder.output_upscaling.0.weight'],
    )


def test_cpu_amp_wrapper_autocasts_to_bfloat16():
    from mmsam.engine import CPUAmpOptimWrapper

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 8))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().square().mean())
    assert model.weight.dtype == torch.float32 and not torch.equal(model.weight, before)
    with pytest.raises(ValueError, match='bfloat16 only'):
        CPUAmpOptimWrapper(dtype='float16', optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
