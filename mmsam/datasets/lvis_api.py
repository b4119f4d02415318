"""The LVIS API (``lvis``, the LVIS authors' package) as mmsam uses it, on numpy >= 1.24.

Why this route. The reference LVIS evaluation is the LVIS authors' ``lvis-api``
(federated AP: ``neg_category_ids``, ``not_exhaustive_category_ids``, 300 detections
per image, APr/APc/APf), which mmdet's ``LVISV1Dataset`` and ``LVISMetric`` import as
``lvis``. Its last PyPI release, ``lvis`` 0.5.3 (2020), still calls ``np.float``
(removed in numpy 1.24) in ``LVISEval.accumulate``; the repository fixed exactly that
in 2024 (``np.float`` -> ``float``) without a new release. The alternatives on PyPI
were checked: ``mmlvis`` 10.5.3 (OpenMMLab's 2020 fork, which mmdet itself calls
deprecated) has the same ``np.float``; ``visaionlvis`` 0.5.4 is a third party's
re-upload of the repository's code under another name, with no maintainer behind it;
``faster-coco-eval`` (maintained) re-implements LVIS-style evaluation in its own
evaluator, which is not the reference and not what mmdet's LVIS classes import. Both
LVIS packages also pull ``opencv-python``, which mmcv and mmengine already require.
So mmsam installs ``lvis==0.5.3`` from
PyPI (``requirements/optional.txt``) and gives ``lvis.eval`` -- that module alone -- the
alias ``np.float = float`` that upstream's fix spells out; nothing else changes and
numpy itself is not touched. Once an ``lvis`` release without ``np.float`` exists the
alias is simply unused.
"""

import importlib
import types

import numpy as np

#: what to install when ``lvis`` is missing
LVIS_INSTALL_HINT = (
    'LVIS datasets and metrics need the LVIS API: pip install "lvis==0.5.3" '
    "(in mmsam's requirements/optional.txt)"
)


class _NumpyWithFloatAlias(types.ModuleType):
    """numpy, seen through a module that also has the ``float`` alias (the builtin
    ``float``, as numpy < 1.24 had it) that ``lvis`` 0.5.3's ``LVISEval`` uses."""

    float = float

    def __init__(self, module: types.ModuleType) -> None:
        super().__init__(module.__name__, module.__doc__)
        self._module = module

    def __getattr__(self, name: str):
        return getattr(self._module, name)


def import_lvis() -> types.ModuleType:
    """Import ``lvis`` (``LVIS``, ``LVISEval``, ``LVISResults``), ready for this numpy.

    Returns:
        module: The ``lvis`` package.

    Raises:
        ImportError: ``lvis`` is not installed (with :data:`LVIS_INSTALL_HINT`).
    """
    try:
        lvis = importlib.import_module('lvis')
        lvis_eval = importlib.import_module('lvis.eval')
    except ImportError as exc:
        raise ImportError(f'{LVIS_INSTALL_HINT} ({exc})') from exc
    if not isinstance(lvis_eval.np, _NumpyWithFloatAlias):
        lvis_eval.np = _NumpyWithFloatAlias(np)
    return lvis
