"""The repository is lint-clean and formatted (ruff, configured in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = [
    p for p in ('mmsam', 'tools', 'tests', 'demo', 'configs', 'setup.py') if (ROOT / p).exists()
]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip('ruff')
    return subprocess.run(
        [sys.executable, '-m', 'ruff', *args, *PATHS], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_check_is_clean():
    out = _ruff('check', '--no-cache')
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_clean():
    out = _ruff('format', '--check', '--no-cache')
    assert out.returncode == 0, out.stdout + out.stderr
