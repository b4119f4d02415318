"""Suite-wide guards."""

import pytest
from mmengine.registry import DefaultScope


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
