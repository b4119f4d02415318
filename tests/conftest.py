"""Suite-wide guards and fixtures."""

import logging
import os
import random
import sys

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from mmsam.testing.outer_loop import starts_subprocess


@pytest.fixture(autouse=True)
def seed_global_rngs():
    """Seed torch, numpy and ``random`` before each test (belt and braces).

    A test whose outcome depends on random values seeds them itself, right before it
    draws them (``torch.manual_seed``, ``np.random.default_rng(seed)``, a
    ``torch.Generator``); this guard only makes any draw it forgot independent of the
    tests that ran before it. Module- and session-scoped fixtures are set up before this
    function-scoped one runs, so they must seed themselves.
    """
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


@pytest.fixture(autouse=True)
def no_leaked_default_scope(request):
    """A test must not leave mmengine's global default scope changed.

    A leaked ``default_scope='mmdet'`` makes later builds from mmpretrain's registry
    fail in unrelated tests (as it would in a user's session): use
    ``DefaultScope.overwrite_default_scope(...)`` as a context instead.
    """
    before = DefaultScope.get_current_instance()
    yield
    after = DefaultScope.get_current_instance()
    if after is not before:
        name = after.scope_name if after is not None else None
        pytest.fail(f'{request.node.nodeid} left the global default scope set to {name!r}')


@pytest.fixture(autouse=True)
def mmengine_loggers_write_to_the_current_stderr():
    """Point mmengine loggers made under an earlier test's ``capsys`` at today's stderr.

    An ``MMLogger`` keeps the ``sys.stderr`` of the test that created it; once that
    test's capture is closed, a later warning would print a ``Logging error`` traceback
    (and fail tests that expect one clean error line) depending on the test order.
    """
    from mmengine.logging import MMLogger

    for logger in list(MMLogger._instance_dict.values()):
        for handler in logger.handlers:
            stream = getattr(handler, 'stream', None)
            if isinstance(handler, logging.StreamHandler) and getattr(stream, 'closed', False):
                handler.stream = sys.stderr  # setStream would flush the closed one
    yield


@pytest.fixture
def log_records():
    """Warnings and errors logged through mmengine's current logger (``print_log``)."""
    from mmengine.logging import MMLogger

    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# ---------------------------------------------------------------- the fast inner loop
#: Modules of the outer loop as a whole: lint, packaging and environment set-up.
OUTER_LOOP_MODULES = ('test_lint.py', 'test_packaging.py', 'test_setup_env.py')
#: Test code in these folders is followed when looking for subprocess starts.
TEST_DIRS = (os.path.dirname(os.path.abspath(__file__)),)


def pytest_addoption(parser):
    parser.addoption(
        '--fast',
        action='store_true',
        help='the inner loop (make test-fast): leave out the outer_loop tests (lint, '
        'packaging, set-up and the tests that start subprocesses)',
    )


def pytest_configure(config):
    config.addinivalue_line(
        'markers',
        'outer_loop: lint, packaging, set-up or a subprocess; left out by --fast '
        '(make test-fast), run by make test (set on such tests by tests/conftest.py)',
    )


def _is_outer_loop(item) -> bool:
    """Lint, packaging, set-up, or a test whose code (its function, its fixtures, or the
    test helpers they call, imported ones included) starts a subprocess
    (:func:`mmsam.testing.outer_loop.starts_subprocess`)."""
    if os.path.basename(str(item.fspath)) in OUTER_LOOP_MODULES:
        return True
    funcs = [getattr(item, 'function', None)]
    fixtureinfo = getattr(item, '_fixtureinfo', None)
    for name in getattr(item, 'fixturenames', ()):
        for fixturedef in fixtureinfo.name2fixturedefs.get(name, ()) if fixtureinfo else ():
            funcs.append(fixturedef.func)
    return any(starts_subprocess(f, TEST_DIRS) for f in funcs if f is not None)


def pytest_collection_modifyitems(config, items):
    fast = config.getoption('--fast')
    kept, left_out = [], []
    for item in items:
        if _is_outer_loop(item):
            item.add_marker(pytest.mark.outer_loop)
            if fast:
                left_out.append(item)
                continue
        kept.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


# ---------------------------------------------------------------- reference packages in CI
#: The reference implementations parity tests compare with (requirements/tests.txt);
#: a test that skips for want of one fails instead under CI (env CI=true).
REFERENCE_PACKAGES = ('segment_anything', 'segment_anything_hq', 'mobile_sam', 'efficientsam')


def _missing_reference(report) -> bool:
    if not report.skipped or os.environ.get('CI', '').lower() not in ('true', '1'):
        return False
    reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
    return any(f"could not import '{name}" in reason for name in REFERENCE_PACKAGES)


def _fail_instead(report) -> None:
    report.outcome = 'failed'
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
    report.longrepr = (
        f'{reason}: the reference package is missing under CI (CI=true), where parity '
        'tests must run; install requirements/tests.txt'
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if _missing_reference(report):
        _fail_instead(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _missing_reference(report):
        _fail_instead(report)
