"""Atomic writes give the permissions a plain open() gives; output folders checked early."""

import os
import stat

import pytest

from mmsam.utils.atomic_file import atomic_write, atomic_write_json, prepare_output_dir


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002])
def test_new_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / 'plain.bin', 'wb') as f:
            f.write(b'x')
        with atomic_write(str(tmp_path / 'atomic.bin')) as f:
            f.write(b'x')
        atomic_write_json({'a': 1}, str(tmp_path / 'atomic.json'))
    finally:
        os.umask(old)
    expected = _mode(tmp_path / 'plain.bin')
    assert expected == 0o666 & ~umask
    assert _mode(tmp_path / 'atomic.bin') == expected
    assert _mode(tmp_path / 'atomic.json') == expected


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / 'kept.json'
    path.write_text('{}')
    path.chmod(0o640)
    atomic_write_json({'b': 2}, str(path))
    assert _mode(path) == 0o640 and path.read_text() == '{"b":2}'


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_write(str(tmp_path / 'never.bin')) as f:
            f.write(b'half')
            raise RuntimeError('stop')
    assert os.listdir(tmp_path) == []


def test_prepare_output_dir(tmp_path):
    made = tmp_path / 'a' / 'b'
    assert prepare_output_dir(str(made)) == str(made) and made.is_dir()
    a_file = tmp_path / 'file'
    a_file.write_text('x')
    with pytest.raises(NotADirectoryError, match='is a file'):
        prepare_output_dir(str(a_file))
    with pytest.raises(NotADirectoryError, match='is a file'):
        prepare_output_dir(str(a_file / 'below'))
