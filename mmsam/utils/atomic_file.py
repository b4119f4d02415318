"""Write files whole or not at all: a temporary file in the same folder, then a rename."""

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb', encoding: str = None) -> Iterator[IO]:
    """Open a temporary file next to ``path``; rename it over ``path`` on success.

    If the body raises, the temporary file is removed and ``path`` is left as it was.

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
