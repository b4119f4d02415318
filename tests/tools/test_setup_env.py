"""tools/setup_env.sh stops with one clear line when a prerequisite is missing."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path, **env):
    full_env = {**os.environ, 'MMSAM_VENV': str(tmp_path / 'venv'), **env}
    return subprocess.run(
        ['bash', str(ROOT / 'tools' / 'setup_env.sh')],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def test_missing_python_is_named(tmp_path):
    out = _run(tmp_path, PYTHON='no-such-python3')
    assert out.returncode == 1
    assert "no 'no-such-python3' on PATH" in out.stderr
    assert not (tmp_path / 'venv').exists()


def test_unsupported_python_version_is_named(tmp_path):
    fake = tmp_path / 'python-too-new'
    fake.write_text('#!/bin/sh\nexec python3 -c "import sys; sys.exit(1)"\n')
    fake.chmod(0o755)
    out = _run(tmp_path, PYTHON=str(fake))
    assert out.returncode == 1
    assert 'is not supported; mmcv 2.1.0 needs Python 3.8-3.12' in out.stderr


def test_missing_compiler_is_named(tmp_path):
    out = _run(tmp_path, CXX='no-such-g++')
    assert out.returncode == 1
    assert "no C++ compiler ('no-such-g++') found" in out.stderr
    lines = [line for line in out.stderr.splitlines() if 'ERROR' in line]
    assert len(lines) == 1
