"""mmsam: Segment Anything (SAM) for the OpenMMLab tool chain.

Importing mmsam registers its image encoder in ``mmpretrain.registry.MODELS``; its
prompt encoder, mask decoder, data preprocessor and assembled ``SAM`` model in
``mmdet.registry.MODELS``; and its datasets, prompt transforms and metrics in mmdet's
``DATASETS``, ``TRANSFORMS`` and ``METRICS``.
"""

from ._compat import check_environment, torch_installed
from .version import __version__, version_info

# A torch-free install only serves ONNX graphs (mmsam.deploy.ONNXPredictor); with torch
# installed, a broken torch still fails loudly here.
HAS_TORCH = torch_installed()
if HAS_TORCH:
    check_environment()
    # registers the models, datasets, transforms and metrics (mmdet/mmpretrain registries)
    from . import datasets, evaluation, models  # noqa: E402,F401

__all__ = [
    '__version__',
    'version_info',
    'models',
    'datasets',
    'evaluation',
    'get_model',
    'list_models',
]


def __getattr__(name: str):
    # mmsam.get_model / mmsam.list_models, imported on first use to keep `import mmsam` light
    if name in ('get_model', 'list_models'):
        from .apis import model_zoo

        return getattr(model_zoo, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
