"""Write files whole or not at all: a temporary file in the same folder, then a rename.

The written file gets the permissions a plain ``open(path, 'w')`` gives: those of the
file it replaces, or ``0o666`` less the process's umask for a new file (not the
``0o600`` of :func:`tempfile.mkstemp`).
"""

import contextlib
import json
import os
import stat
import tempfile
from typing import IO, Any, Iterator


def _umask() -> int:
    """The process's umask (read without changing it where the OS tells it)."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _mode_for(path: str) -> int:
    """The permission bits ``open(path, 'w')`` would leave ``path`` with."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb', encoding: str = None) -> Iterator[IO]:
    """Open a temporary file next to ``path``; rename it over ``path`` on success.

    If the body raises, the temporary file is removed and ``path`` is left as it was.
    The result has the permissions a plain ``open`` would give (see the module
    docstring).

    Args:
        path (str): The destination; its folder is created if missing.
        mode (str): ``'wb'`` or ``'w'``.
        encoding (str, optional): Text encoding for ``'w'`` (default UTF-8).

    Yields:
        file: The open temporary file.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        os.chmod(tmp, _mode_for(path))
        kwargs = {} if mode == 'wb' else {'encoding': encoding or 'utf-8'}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(obj: Any, path: str) -> None:
    """``json.dump`` ``obj`` to ``path`` atomically (compact separators, UTF-8)."""
    with atomic_write(path, 'w') as f:
        json.dump(obj, f, separators=(',', ':'))


def prepare_output_dir(path: str, what: str = 'output folder') -> str:
    """Create ``path`` if needed and check that files can be written in it.

    Run before any work, so that a bad output folder is reported at once rather
    than after every image has been processed.

    Args:
        path (str): The folder.
        what (str): What to call it in error messages.

    Returns:
        str: ``path``.

    Raises:
        NotADirectoryError: ``path`` (or a folder above it) is a file.
        PermissionError: the folder cannot be created or written to.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f'{what} {path} is a file, not a folder: give another path')
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError as err:  # a file somewhere above it
        raise NotADirectoryError(
            f'{what} {path} cannot be created: {err.filename} is a file, not a folder'
        ) from err
    except NotADirectoryError as err:
        raise NotADirectoryError(
            f'{what} {path} cannot be created: a part of the path is a file, not a folder'
        ) from err
    except PermissionError as err:
        raise PermissionError(f'{what} {path} cannot be created: permission denied') from err
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise PermissionError(
            f'{what} {path} is not writable ({err.strerror or type(err).__name__})'
        ) from err
    return path
