"""A built wheel carries what an installed mmsam needs beside its code."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_model_index_and_configs(tmp_path):
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
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    wheels = list(tmp_path.glob('mmsam-*.whl'))
    assert len(wheels) == 1, list(tmp_path.iterdir())
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
    assert not (ROOT / 'mmsam' / '.mim').exists()
