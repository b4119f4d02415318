"""The repository's command-line scripts (``tools/**/*.py``) imported as modules, for tests
that call their ``main`` or helpers in-process."""

import importlib.util
import os.path as osp
from types import ModuleType

from .eval_runs import REPO


def load_tool(relative_path: str) -> ModuleType:
    """Import ``REPO/relative_path`` (e.g. ``'tools/analysis_tools/get_flops.py'``).

    Args:
        relative_path (str): The script's path from the repository root.

    Returns:
        ModuleType: The script as a module (its ``__main__`` block not run).
    """
    path = osp.join(REPO, relative_path)
    name = 'mmsam_tool_' + osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
