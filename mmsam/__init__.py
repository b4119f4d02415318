"""mmsam: Segment Anything (SAM) for the OpenMMLab tool chain.

Importing mmsam registers its image encoder in ``mmpretrain.registry.MODELS`` and its
prompt encoder, mask decoder, data preprocessor and assembled ``SAM`` model in
``mmdet.registry.MODELS``.
"""

from ._compat import check_environment, torch_installed
from .version import __version__, version_info

# A torch-free install only serves ONNX graphs (mmsam.deploy.ONNXPredictor); with torch
# installed, a broken torch still fails loudly here.
HAS_TORCH = torch_installed()
if HAS_TORCH:
    check_environment()
    from . import models  # noqa: E402,F401  (registers the modules)

__all__ = ['__version__', 'version_info', 'models', 'get_model', 'list_models']


def __getattr__(name: str):
    # mmsam.get_model / mmsam.list_models, imported on first use to keep `import mmsam` light
    if name in ('get_model', 'list_models'):
        from .apis import model_zoo

        return getattr(model_zoo, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
