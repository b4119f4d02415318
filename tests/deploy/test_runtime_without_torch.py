"""The ONNX runtime side of mmsam must serve masks on a machine without torch."""

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mmsam.deploy as deploy
from mmsam.deploy import ONNXPredictor

DEPLOY_DIR = os.path.dirname(deploy.__file__)
REPO = os.path.dirname(os.path.dirname(DEPLOY_DIR))
#: The modules ``from mmsam.deploy import ONNXPredictor`` loads, and what they may import.
RUNTIME_MODULES = ('__init__', 'onnx_predictor', 'onnx_session', 'onnx_deps', 'graph_spec')
ALLOWED = {
    'importlib',
    'json',
    'os',
    'types',
    'typing',
    'numpy',
    'onnxruntime',
    'mmsam.structures.transforms',
    'mmsam.structures.prompts',
    'mmsam.structures.image_state',  # torch-free: the predictors' shared image state
    *(f'mmsam.deploy.{name}' for name in RUNTIME_MODULES),
}


def imported_modules(name: str):
    """Absolute names of the modules imported at the top level of ``mmsam/deploy/<name>.py``."""
    with open(os.path.join(DEPLOY_DIR, name + '.py'), encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.module
            else:
                base = 'mmsam.deploy' if node.level == 1 else 'mmsam'
                if node.module:
                    yield f'{base}.{node.module}'
                else:
                    yield from (f'{base}.{alias.name}' for alias in node.names)


@pytest.mark.parametrize('name', RUNTIME_MODULES)
def test_runtime_modules_import_nothing_that_needs_torch(name):
    imports = set(imported_modules(name))
    assert imports, name
    assert imports <= ALLOWED, f'mmsam/deploy/{name}.py imports {sorted(imports - ALLOWED)}'


BLOCK_TORCH_AND_PREDICT = r"""
import importlib.abc, json, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return None

sys.meta_path.insert(0, BlockTorch())
import numpy as np
from mmsam.deploy import ONNXPredictor

decoder, encoder = sys.argv[1:3]
rng = np.random.default_rng(0)
image = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
predictor = ONNXPredictor(decoder, encoder)
predictor.set_image(image)
masks, scores, low_res = predictor.predict(point_coords=[[40, 30]], point_labels=[1])
assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)
print(json.dumps({'area': int(masks.sum()), 'scores': scores.tolist()}))
"""


def test_onnx_predictor_runs_with_torch_blocked(onnx_files, encoder_file):
    result = subprocess.run(
        [sys.executable, '-c', BLOCK_TORCH_AND_PREDICT, onnx_files['decoder'], encoder_file],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    predictor = ONNXPredictor(onnx_files['decoder'], encoder_file)
    rng = np.random.default_rng(0)
    predictor.set_image(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8))
    masks, scores, _ = predictor.predict(point_coords=[[40, 30]], point_labels=[1])
    assert got['area'] == int(masks.sum())
    np.testing.assert_allclose(got['scores'], scores, atol=1e-6)
