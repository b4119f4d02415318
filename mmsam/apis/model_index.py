"""The pre-defined SAM models: names, configs and weights from ``model-index.yml``.

Light on purpose (``modelindex`` only; no torch, mmengine, mmdet or mmpretrain), so that
:func:`mmsam.list_models` and the command line's help answer at once.
:mod:`mmsam.apis.model_zoo` builds the models.
"""

import copy
import difflib
import fnmatch
from pathlib import Path
from typing import Dict, List, Optional

#: The model the command line and :func:`mmsam.cli.annotate.auto_annotate` use by default.
DEFAULT_MODEL = 'sam_vit-base-p16_3rdparty_sa1b-1024px'


def _package_root() -> Path:
    return Path(__file__).resolve().parents[1]


def model_index_path() -> Path:
    """Where ``model-index.yml`` is: ``mmsam/.mim/`` when installed, else the repository root.

    Raises:
        FileNotFoundError: if neither has it.
    """
    for root in (_package_root() / '.mim', _package_root().parent):
        path = root / 'model-index.yml'
        if path.is_file():
            return path
    raise FileNotFoundError(
        'model-index.yml was not found next to the mmsam package; get_model by name needs '
        'the repository (pip install -e .) or a package built with its configs'
    )


_MODELS: Dict[str, dict] = {}


def _load_index() -> Dict[str, dict]:
    """Name (lower case) -> metainfo dict with an absolute ``Config`` path.

    Read with ``modelindex`` (OpenMMLab's model-index reader, as ``mmpretrain.get_model``
    does): ``model-index.yml`` imports each ``configs/*/metafile.yml``.
    """
    if _MODELS:
        return _MODELS
    from modelindex.load_model_index import load

    index_path = model_index_path()
    root = index_path.parent
    for model in load(str(index_path)).models:
        info = dict(model.data)
        info['Metadata'] = dict(model.metadata.data) if model.metadata is not None else {}
        info['Config'] = str(root / model.config)
        _MODELS[model.name.lower()] = info
    return _MODELS


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Names of the pre-defined models.

    Args:
        pattern: a wildcard pattern (``fnmatch``; a trailing ``*`` is implied), e.g.
            ``'sam_vit-*'`` or ``'*base*'``.

    Returns:
        The sorted names.
    """
    names = sorted(info['Name'] for info in _load_index().values())
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower() + '*')]
    return names


def _nearest(name: str, names: List[str], n: int = 3) -> List[str]:
    """Names containing ``name``, else the most similar ones (``difflib``)."""
    low = name.lower()
    containing = [m for m in names if low in m.lower()]
    if containing:
        return containing[:n]
    lowered = {m.lower(): m for m in names}
    return [lowered[m] for m in difflib.get_close_matches(low, list(lowered), n=n, cutoff=0.3)]


def get_model_info(name: str) -> dict:
    """The metafile entry of a model (``Name``, ``Metadata``, ``Weights``, ``Config``, ...).

    Raises:
        ValueError: for an unknown name, suggesting the nearest ones.
    """
    index = _load_index()
    info = index.get(str(name).lower())
    if info is None:
        names = [i['Name'] for i in index.values()]
        near = _nearest(str(name), names)
        hint = f'; did you mean {", ".join(map(repr, near))}?' if near else ''
        raise ValueError(
            f'unknown model name {name!r}{hint} (mmsam.list_models() lists all '
            f'{len(names)}; a config file path or a Config also works)'
        )
    return copy.deepcopy(info)
