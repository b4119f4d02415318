"""The installed stack works: compiled mmcv ops, mmdet and mmpretrain, safe checkpoints."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).parents[1]


def pinned(package: str, requirements: str = 'mminstall.txt') -> str:
    """The version ``requirements/<requirements>`` pins for ``package`` (``name==X``)."""
    text = (REPO / 'requirements' / requirements).read_text()
    pin = re.search(rf'^{re.escape(package)}==(\S+)\s*$', text, re.M)
    assert pin, f'requirements/{requirements} must pin {package}'
    return pin.group(1)


def test_mmcv_compiled_ops_run():
    from mmcv.ops import nms

    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], dtype=torch.float32
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [3, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.95, 0.7]))


def test_mmdet_parts_import():
    import mmdet
    import mmdet.datasets  # noqa: F401
    import mmdet.evaluation  # noqa: F401
    import mmdet.models  # noqa: F401
    from mmdet.evaluation import CocoMetric  # noqa: F401

    assert mmdet.__version__ == pinned('mmdet')


def test_mmpretrain_imports():
    import mmpretrain
    from mmpretrain.registry import MODELS

    assert mmpretrain.__version__ == pinned('mmpretrain')
    assert 'ViTSAM' in MODELS


def test_pinned_transformers_keeps_mmpretrain_and_grounding_dino_working():
    """The set-up's transformers pin is installed; mmpretrain and mmdet's BERT import with it."""
    import transformers

    # segment by text needs this pin
    assert transformers.__version__ == pinned('transformers', 'optional.txt')
    # mmpretrain enables its multimodal models when transformers is present: they must import
    code = (
        'import mmpretrain.models\n'
        'from mmpretrain.registry import MODELS\n'
        'from mmdet.models.language_models import bert\n'
        'print("BlipCaption" in MODELS, bert.HFBertModel is not None)\n'
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.stdout.split() == ['True', 'True'], out.stdout + out.stderr


def test_mmsam_registers_its_modules():
    from mmdet.registry import MODELS as DET_MODELS
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS

    import mmsam

    assert mmsam.__version__
    mmsam.register_all_modules()
    assert 'SAMImageEncoder' in PRETRAIN_MODELS
    for name in ('SAM', 'SAMPromptEncoder', 'SAMMaskDecoder', 'SAMDataPreprocessor'):
        assert name in DET_MODELS, name


def test_collect_env_reports_the_stack():
    from mmsam.utils import collect_env

    env = collect_env()
    for key in ('torch', 'mmcv', 'mmcv ops', 'mmengine', 'mmpretrain', 'mmdet', 'pycocotools'):
        assert key in env
    assert env['mmcv'] == pinned('mmcv')
    assert env['mmengine'] == pinned('mmengine')
    assert env['mmcv ops'].startswith('compiled')


def test_print_env_tool_runs():
    out = subprocess.run(
        [sys.executable, 'tools/misc/print_env.py'], capture_output=True, text=True, check=True
    )
    assert f'mmdet: {pinned("mmdet")}' in out.stdout


def test_import_mmsam_explains_a_broken_transformers(tmp_path):
    """A transformers that breaks mmpretrain gives an error naming the cause and the fix."""
    fake = tmp_path / 'transformers'
    fake.mkdir()
    (fake / '__init__.py').write_text('')
    code = (
        'import sys\n'
        'import mmpretrain.registry as r\n'  # make the real import fail the way it does
        'sys.modules.pop("mmpretrain.registry")\n'
        'class Boom:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name == "mmpretrain.registry":\n'
        '            raise TypeError("NoneType takes no arguments")\n'
        'sys.meta_path.insert(0, Boom())\n'
        'import mmsam\n'  # light: imports no OpenMMLab package
        'try:\n'
        '    mmsam.register_all_modules()\n'
        'except ImportError as e:\n'
        '    print("ERR", e)\n'
    )
    env = {'PYTHONPATH': str(tmp_path)}
    import os

    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    assert 'ERR' in out.stdout, out.stderr
    assert 'transformers' in out.stdout and 'uninstall' in out.stdout


def test_import_mmsam_alone_registers_nothing_heavy():
    code = (
        'import sys, mmsam\n'
        'heavy = ("torch", "mmdet", "mmpretrain", "mmengine")\n'
        'print(sorted(m for m in heavy if m in sys.modules))\n'
        'mmsam.register_all_modules()\n'
        'from mmdet.registry import MODELS\n'
        'print("SAM" in MODELS)\n'
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.stdout.split('\n')[:2] == ['[]', 'True'], out.stdout + out.stderr


def test_checkpoint_written_by_mmsam_loads_with_weights_only(tmp_path):
    from mmsam.utils.checkpoint_io import save_checkpoint

    state = {'backbone.pos_embed': torch.randn(1, 4, 4, 8)}
    path = tmp_path / 'ckpt.pth'
    save_checkpoint(state, str(path), meta=dict(arch='tiny', converted_from='test'))
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded['state_dict']['backbone.pos_embed'], state['backbone.pos_embed'])


if __name__ == '__main__':
    sys.exit(pytest.main([__file__]))


@pytest.mark.parametrize('ci', ['true', ''])
def test_parity_tests_fail_without_the_reference_package_under_ci(tmp_path, ci):
    """tests/conftest.py turns the skip of a missing ``segment_anything`` into a failure
    under CI (CI=true); elsewhere the parity tests skip."""
    shadow = tmp_path / 'segment_anything'
    shadow.mkdir()
    (shadow / '__init__.py').write_text(
        "raise ModuleNotFoundError('not installed here', name='segment_anything')\n"
    )
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get('PYTHONPATH')) if p)
    env = dict(os.environ, CI=ci, PYTHONPATH=path)
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider']
    cmd += ['tests/structures/test_prompts.py']
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if ci:
        assert out.returncode == 2, out.stdout + out.stderr  # 2: a collection error
        assert 'the reference package is missing under CI' in out.stdout, out.stdout
    else:
        assert out.returncode == 5, out.stdout + out.stderr  # 5: no test ran
        assert '1 skipped' in out.stdout, out.stdout
