"""Which test code starts a subprocess (the ``outer_loop`` tests that ``pytest --fast`` leaves out).

``tests/conftest.py`` asks :func:`starts_subprocess` of every test function and of the
fixtures it uses. A function starts a subprocess when its source does
(:data:`STARTS_SUBPROCESS`) or when it calls, by name, a function of the test code that
does, followed through each module's namespace: a helper of the test module, or one
imported from :mod:`mmsam.testing` (``run_cli``, ``run_box_prompt_eval``,
``assert_box_prompt_eval_runs``, ...), or one of theirs, at any depth. The library itself
is not followed: a test of a library function is the inner loop.
"""

import functools
import inspect
import os
import os.path as osp
import re
import types
from typing import Callable, Iterator, Optional, Sequence

#: Source text that starts a subprocess.
STARTS_SUBPROCESS = re.compile(r'\bsubprocess\.[A-Za-z_]|\bsys\.executable\b')
#: A call by name: ``name(`` or ``module.name(``.
_CALL = re.compile(r'\b(?:([A-Za-z_]\w*)\.)?([A-Za-z_]\w*)\(')
#: The package of test helpers, always followed.
TESTING_PACKAGE = __name__.rpartition('.')[0]


def _function(value) -> Optional[Callable]:
    """``value`` as a plain function (decorators unwrapped), or None."""
    try:
        value = inspect.unwrap(value) if callable(value) else None
    except ValueError:  # a __wrapped__ cycle (mock objects)
        return None
    return value if inspect.isfunction(value) else None


@functools.lru_cache(maxsize=None)
def _source(func: Callable) -> str:
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):
        return ''


def _is_test_code(func: Callable, test_dirs: Sequence[str]) -> bool:
    """Whether ``func`` is a function of :data:`TESTING_PACKAGE` or of a file under
    ``test_dirs``."""
    module = getattr(func, '__module__', None) or ''
    if module == TESTING_PACKAGE or module.startswith(TESTING_PACKAGE + '.'):
        return True
    try:
        path = osp.abspath(inspect.getsourcefile(func) or '')
    except TypeError:
        return False
    return any(path.startswith(osp.join(osp.abspath(d), '')) for d in test_dirs)


def _callees(func: Callable, test_dirs: Sequence[str]) -> Iterator[Callable]:
    """The functions of the test code that ``func``'s source calls by name."""
    namespace = getattr(func, '__globals__', {})
    for prefix, name in _CALL.findall(_source(func)):
        if prefix:
            owner = namespace.get(prefix)
            value = getattr(owner, name, None) if isinstance(owner, types.ModuleType) else None
        else:
            value = namespace.get(name)
        value = _function(value)
        if value is not None and _is_test_code(value, test_dirs):
            yield value


def starts_subprocess(func: Callable, test_dirs: Sequence[str] = ()) -> bool:
    """Whether ``func``, or a function of the test code it calls (at any depth), starts a
    subprocess.

    Args:
        func (Callable): A test function or a fixture's function.
        test_dirs (Sequence[str]): Folders whose functions are followed besides
            :data:`TESTING_PACKAGE`'s (the tests' folder).

    Returns:
        bool: True when the source of ``func`` or of a function it reaches matches
        :data:`STARTS_SUBPROCESS`.
    """
    func = _function(func)
    return func is not None and _starts_subprocess(func, tuple(map(os.fspath, test_dirs)))


@functools.lru_cache(maxsize=None)
def _starts_subprocess(func: Callable, test_dirs: tuple) -> bool:
    seen, todo = {func}, [func]
    while todo:  # every function reached, each once (helpers may call each other)
        current = todo.pop()
        if STARTS_SUBPROCESS.search(_source(current)):
            return True
        for callee in _callees(current, test_dirs):
            if callee not in seen:
                seen.add(callee)
                todo.append(callee)
    return False
