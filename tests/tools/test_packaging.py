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
            '.mim',  # an editable install's links: the copy is like a fresh clone
        ),
    )
    linked = (ROOT / 'mmsam' / '.mim' / 'configs').is_symlink()
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
    # the build leaves the source trees as they were (the checkout keeps the links of
    # its editable install, if any)
    assert not (src / 'mmsam' / '.mim').exists()
    assert (ROOT / 'mmsam' / '.mim' / 'configs').is_symlink() == linked


def test_editable_install_links_the_mim_folder(tmp_path):
    """As mmdet's setup.py: ``pip install -e .`` links configs, tools, demo, model-index.yml."""
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.py', 'README.md', 'model-index.yml', 'requirements', 'mmsam'):
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns('.mim', '__pycache__'))
        else:
            shutil.copy(path, src / name)
    for name in ('configs', 'tools', 'demo'):
        (src / name).mkdir()
        (src / name / 'marker.txt').write_text(name)
    # the command pip runs for an editable install (PEP 660), without installing anything
    code = 'import sys, runpy; sys.argv = ["setup.py", "editable_wheel", "--help"]; '
    code += 'runpy.run_path("setup.py", run_name="__main__")'
    subprocess.run([sys.executable, '-c', code], cwd=src, capture_output=True, text=True)
    mim = src / 'mmsam' / '.mim'
    for name in ('configs', 'tools', 'demo', 'model-index.yml'):
        assert (mim / name).is_symlink(), name
        assert (mim / name).resolve() == (src / name).resolve()
    assert (mim / 'configs' / 'marker.txt').read_text() == 'configs'
