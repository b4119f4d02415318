"""Folder jobs under torchrun: 2 processes write what 1 process writes, byte for byte.

``mmsam amg``, ``mmsam annotate`` and ``mmsam embed`` with ``--launcher pytorch`` on 2
gloo processes (CPU; one torchrun launch runs the three commands, see
``sharded_commands.py``), against the same commands in one process. Then outputs of
some images are deleted (what a rank killed mid-run leaves: those images unfinished)
and the 2-process commands are rerun: they redo exactly those images, none twice, and
the outputs equal the one-process run's again. Both sides use one thread per process,
so that float results cannot depend on the thread count.
"""

import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from cli_fixtures import model_args, scene
from PIL import Image
from test_cli_folder_jobs import _detector

from mmsam.cli import main
from mmsam.cli.distributed import shard

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
AMG = ['--points-per-side', '3', '--pred-iou-thresh', '0', '--stability-score-thresh', '0']
NAMES = ['im0.png', 'im2.png', 'im4.png', 'sub/im1.png', 'sub/im3.png']
#: per command: what a killed rank leaves unfinished (files deleted before the rerun)
DROPPED = {
    'amg': ['im0.png.json', '.resume/sub/im3.png.key'],
    'embed': ['embeddings/im2.png.safetensors', 'embeddings/sub/im1.png.safetensors'],
}


def _files(folder):
    """Relative path -> bytes of every file under ``folder`` (resume keys included)."""
    out = {}
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, folder).replace(os.sep, '/')] = f.read()
    return out


def _torchrun(commands, tmp_path):
    """Run ``mmsam`` commands in 2 torchrun processes; per command, its output lines."""
    spec = tmp_path / 'commands.json'
    spec.write_text(json.dumps([[*c, '--launcher', 'pytorch'] for c in commands]))
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2']
    cmd += [osp.join(HERE, 'sharded_commands.py'), str(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _counts(stdout, command):
    """Images processed and skipped by ``command``, summed over the ranks' summaries."""
    found = re.findall(rf'\[{command}\] (\d+) processed, (\d+) skipped', stdout)
    assert len(found) == 2, stdout  # one summary per rank
    return sum(int(p) for p, _ in found), sum(int(s) for _, s in found)


@pytest.fixture(scope='module')
def runs(tiny, tmp_path_factory):
    """One folder; each command run by 1 process (in this one) and by 2 torchrun ones."""
    tmp = tmp_path_factory.mktemp('sharded')
    data = tmp / 'data'
    (data / 'sub').mkdir(parents=True)
    for i, name in enumerate(sorted(NAMES, key=lambda n: int(n[-5]))):
        Image.fromarray(scene(48 + 4 * i, 64, seed=20 + i)).save(data / name)
    config, checkpoint = _detector(tmp, max_per_img=2)
    det = ['--det-model', config, '--det-weights', checkpoint, '--conf', '0']
    det += ['--det-cfg-options', 'test_dataloader.dataset.pipeline.1.scale=(96,96)']
    commands = {
        'amg': lambda out: ['amg', str(data), *AMG, '--out-dir', out],
        'embed': lambda out: ['embed', str(data), '--batch-size', '2', '--out', out],
        'annotate': lambda out: ['annotate', str(data), *det, '--out-dir', out],
    }

    def argv(name, out):
        return [*commands[name](str(out)), *model_args(tiny)]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in commands:
            assert main(argv(name, tmp / 'one' / name)) == 0
    finally:
        torch.set_num_threads(threads)
    stdout = _torchrun([argv(name, tmp / 'two' / name) for name in commands], tmp)
    return dict(tmp=tmp, argv=argv, stdout=stdout, names=list(commands))


def test_shard_is_disjoint_complete_and_deterministic():
    items = [f'im{i}' for i in range(7)]
    shards = [shard(items, r, 3) for r in range(3)]
    assert shards == [['im0', 'im3', 'im6'], ['im1', 'im4'], ['im2', 'im5']]
    assert sorted(sum(shards, [])) == items
    assert shard(items, 0, 1) == items
    with pytest.raises(ValueError, match='rank must be in'):
        shard(items, 3, 3)


@pytest.mark.parametrize('command', ['amg', 'embed', 'annotate'])
def test_two_processes_equal_one(runs, command):
    assert _counts(runs['stdout'], command) == (5, 0)
    one = _files(runs['tmp'] / 'one' / command)
    assert _files(runs['tmp'] / 'two' / command) == one
    if command == 'amg':
        assert sorted(n[:-5] for n in one if n.endswith('.json')) == NAMES
    elif command == 'embed':
        assert [item['image'] for item in json.loads(one['index.json'])['images']] == NAMES
    else:
        coco = json.loads(one['annotations.json'])
        assert [im['file_name'] for im in coco['images']] == NAMES
        assert sum(n.startswith('.cache/') for n in one) == 5


def test_rerun_after_a_killed_rank_redoes_only_the_missing(runs):
    tmp = runs['tmp']
    dropped = dict(DROPPED)
    dropped['annotate'] = sorted(n for n in _files(tmp / 'two' / 'annotate') if 'im4' in n)
    dropped['annotate'] += [n for n in _files(tmp / 'two' / 'annotate') if 'sub/im1' in n]
    dropped['annotate'].append('annotations.json')  # the merge never ran
    for name, rels in dropped.items():
        for rel in rels:
            os.remove(tmp / 'two' / name / rel)
    stdout = _torchrun([runs['argv'](name, tmp / 'two' / name) for name in runs['names']], tmp)
    for name in runs['names']:
        assert _counts(stdout, name) == (2, 3), name
        assert _files(tmp / 'two' / name) == _files(tmp / 'one' / name), name
