"""Importing this module registers all of mmsam's modules in the OpenMMLab registries.

What configs name in ``custom_imports`` and what :func:`mmsam.register_all_modules`
imports: the image encoder in ``mmpretrain.registry.MODELS``; the prompt encoder, mask
decoder, data preprocessor and ``SAM`` in ``mmdet.registry.MODELS``; the datasets,
prompt transforms, metrics and runner in mmdet's and mmengine's registries.

``import mmsam`` alone stays light (no torch, mmdet or mmpretrain), so that the
command line's help and :func:`mmsam.list_models` answer at once.
"""

from ._compat import check_environment

# explains known breakages (an incompatible transformers, mmcv without ops) first
check_environment()

from . import datasets, engine, evaluation, models  # noqa: E402,F401
