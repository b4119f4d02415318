"""Early checks that turn known environment breakages into clear errors."""

import importlib.util


def check_environment() -> None:
    """Import mmpretrain's and mmdet's registries, explaining known failures.

    ``transformers`` 4.52+ in the same environment breaks ``import mmpretrain``
    (a ``TypeError`` in mmpretrain's BLIP language model; the set-up pins 4.51.3, the
    newest that works, for Grounding DINO's BERT); mmcv without its
    compiled ops breaks mmdet. Both are reported with the cause and the fix.
    """
    try:
        import mmpretrain.registry  # noqa: F401
    except TypeError as exc:
        if importlib.util.find_spec('transformers') is not None:
            raise ImportError(
                'mmpretrain fails to import because the installed `transformers` package is '
                'incompatible with mmpretrain 1.2.0 (' + str(exc) + '). Install the version in '
                "mmsam's requirements/optional.txt (`pip install transformers==4.51.3`, the "
                'newest that mmpretrain imports; segment-by-text needs it) or uninstall it '
                '(`pip uninstall transformers`): only segment-by-text needs transformers.'
            ) from exc
        raise
    try:
        import mmcv.ops  # noqa: F401
    except (ImportError, ModuleNotFoundError) as exc:
        raise ImportError(
            'mmcv is installed without its compiled ops (' + str(exc) + '); mmdet needs them. '
            'Run `bash tools/setup_env.sh` (it builds mmcv 2.1.0 with ops) or install a '
            'full mmcv build for your torch.'
        ) from exc


def torch_installed() -> bool:
    """Whether torch can be imported; ``False`` only when it is not installed at all.

    A torch-free install serves ONNX graphs with ``mmsam.deploy.ONNXPredictor``. A torch
    that is installed but fails to import raises its own error here, loudly.
    """
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != 'torch':
            raise
        return False
    return True
