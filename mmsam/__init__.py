"""mmsam: Segment Anything (SAM) for the OpenMMLab tool chain.

``import mmsam`` is light: it imports neither torch nor mmdet nor mmpretrain, so that
``mmsam --help`` and :func:`list_models` answer at once. The modules are registered in
the OpenMMLab registries when they are needed:

* :func:`register_all_modules` (or ``import mmsam.registration``) registers everything:
  the image encoder in ``mmpretrain.registry.MODELS``; the prompt encoder, mask decoder,
  data preprocessor and ``SAM`` in ``mmdet.registry.MODELS``; the datasets, prompt
  transforms and metrics in mmdet's ``DATASETS``, ``TRANSFORMS`` and ``METRICS``;
* configs do it through ``custom_imports = dict(imports=['mmsam.registration'])``;
* :func:`get_model` and the command line do it themselves;
* importing a sub-package (``mmsam.models``, ``mmsam.datasets``, ...) registers what it
  holds.
"""

import importlib
import importlib.util

from .version import __version__, version_info


def _torch_installed() -> bool:
    """Whether torch can be found, without importing it (an import hook that refuses
    torch, as a torch-free deployment may install, counts as not installed)."""
    try:
        return importlib.util.find_spec('torch') is not None
    except (ImportError, ValueError):
        return False


#: Whether torch is installed. A torch-free install only serves ONNX graphs
#: (:class:`mmsam.deploy.ONNXPredictor`). Found without importing torch.
HAS_TORCH = _torch_installed()

__all__ = [
    '__version__',
    'version_info',
    'HAS_TORCH',
    'register_all_modules',
    'get_model',
    'list_models',
    'apis',
    'models',
    'datasets',
    'evaluation',
]

# sub-packages reachable as attributes (``mmsam.models``), imported on first use
_SUBPACKAGES = (
    'apis',
    'datasets',
    'deploy',
    'engine',
    'evaluation',
    'models',
    'structures',
    'testing',
    'utils',
    'visualization',
)


def register_all_modules() -> None:
    """Register mmsam's models, datasets, transforms, metrics and runner (idempotent).

    The OpenMMLab convention (``mmdet.utils.register_all_modules``); needed before
    building mmsam modules from a registry by type name (``MODELS.build(dict(type='SAM',
    ...))``) without a config whose ``custom_imports`` does it.

    Raises:
        ImportError: the OpenMMLab stack is broken, with the cause and the fix (for
            example an incompatible ``transformers`` package, or mmcv without its ops).
    """
    importlib.import_module('.registration', __name__)


def __getattr__(name: str):
    # mmsam.get_model / mmsam.list_models / mmsam.models ..., imported on first use
    if name == 'list_models':
        from .apis.model_index import list_models

        return list_models
    if name == 'get_model':
        from .apis.model_zoo import get_model

        return get_model
    if name in _SUBPACKAGES:
        return importlib.import_module(f'.{name}', __name__)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
