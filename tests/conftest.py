"""Suite-wide guards and fixtures."""

import logging
import random

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope


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
