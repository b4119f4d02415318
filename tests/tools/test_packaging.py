"""A built wheel carries what an installed mmsam needs beside its code."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_model_index_and_configs(tmp_path):
    # build from a copy, so the test leaves no build/ or egg-info in the checkout (and no
    # stale build/lib of an earlier run can slip into the wheel)
    src = tmp_path / 'src'
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            '.git',
            '.venv',
            'build',
            'dist',
            '*.egg-info',
            'outputs',
            'work_dirs',
            '__pycache__',
            '.pytest_cache',
            '.ruff_cache',
        ),
    )
    wheel_dir = tmp_path / 'wheels'
    out = subprocess.run(
        [
            sys.executable,
            '-m',
            'pip',
            'wheel',
            '--no-deps',
            '--no-build-isolation',
            '-q',
            '-w',
            str(wheel_dir),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    wheels = list(wheel_dir.glob('mmsam-*.whl'))
    assert len(wheels) == 1, list(wheel_dir.iterdir())
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for required in (
        'mmsam/.mim/model-index.yml',
        'mmsam/.mim/configs/sam/metafile.yml',
        'mmsam/.mim/configs/sam/sam_vit-base-p16_3rdparty_sa1b-1024px.py',
        'mmsam/.mim/configs/_base_/models/sam_vit-base.py',
        'mmsam/__init__.py',
        'mmsam/models/detectors/sam.py',
    ):
        assert required in names, required
    assert not any(n.startswith('tests/') for n in names)
    # the build leaves the source tree as it was
    assert not (src / 'mmsam' / '.mim').exists()
    assert not (ROOT / 'mmsam' / '.mim').exists()
