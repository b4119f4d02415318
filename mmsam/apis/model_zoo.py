"""Pre-defined SAM models by name, in the manner of ``mmpretrain.get_model``.

The names, configs and weight URLs come from ``model-index.yml`` (which imports
``configs/sam/metafile.yml``). Full models (``sam_vit-*``) are mmdet ``SAM`` detectors;
the headless backbones (``vit-*-p16_sam-pre_*``, mmpretrain's names) are mmpretrain
``ImageClassifier`` models whose ``extract_feat`` returns the image embeddings.

Weights load from any known layout (official ``segment_anything``, Hugging Face,
mmpretrain ``ViTSAM``, mmsam): they are converted in memory and checked against the
model before anything is copied, so a bad file leaves no half-loaded model.
"""

import copy
import os
import os.path as osp
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlparse

import torch
import torch.nn as nn
from mmengine.config import Config

from ..utils.checkpoint_loader import load_checkpoint_to_model

# the listing lives in a light module (mmsam.list_models, the command line's help)
from .model_index import (  # noqa: F401
    _load_index,
    _nearest,
    get_model_info,
    list_models,
    model_index_path,
)

ModelSpec = Union[str, os.PathLike, Config]


class CheckpointDownloadError(RuntimeError):
    """Pre-defined weights that could not be downloaded."""


# ------------------------------------------------------------------ configs
def arch_overrides(arch_info: dict, headless: bool) -> dict:
    """Config overrides (for ``get_model(**overrides)``) that fit a model to an encoder size.

    Args:
        arch_info: what :func:`mmsam.utils.checkpoint_keys.infer_encoder_arch` returns
            (``arch_settings``, ``img_size``, ``window_size``, ``patch_size``).
        headless: overrides for the headless ``ImageClassifier`` (backbone only) rather
            than the full ``SAM``.

    Returns:
        dict: ``backbone`` (and, for SAM, ``data_preprocessor`` and ``prompt_encoder``).
    """
    img = int(arch_info['img_size'])
    patch = int(arch_info.get('patch_size') or 16)
    arch = arch_info.get('arch', 'custom')
    if arch not in ('base', 'large', 'huge'):
        # replaces the config's arch name instead of merging into it
        arch = dict(_delete_=True, **arch_info['arch_settings'])
    out = dict(
        backbone=dict(
            arch=arch,
            img_size=img,
            patch_size=patch,
            window_size=int(arch_info['window_size']),
        )
    )
    if not headless:
        embed = img // patch
        out['data_preprocessor'] = dict(image_size=img)
        out['prompt_encoder'] = dict(
            image_embedding_size=(embed, embed), input_image_size=(img, img)
        )
    return out


def _load_config(model: ModelSpec) -> tuple:
    """``(config, metainfo or None)`` for a name, a ``.py`` path or a Config."""
    if isinstance(model, Config):
        return copy.deepcopy(model), None
    if isinstance(model, (str, os.PathLike)) and Path(model).suffix == '.py':
        if not osp.isfile(model):
            raise FileNotFoundError(f'config file {str(model)!r} does not exist')
        return Config.fromfile(str(model)), None
    if isinstance(model, str):
        info = get_model_info(model)
        return Config.fromfile(info['Config']), info
    raise TypeError(
        f'model must be a model name, a config path or a Config, got {type(model).__name__}'
    )


def is_headless(model: nn.Module) -> bool:
    """Whether ``model`` is a backbone-only model (no prompt encoder / mask decoder)."""
    return not (hasattr(model, 'prompt_encoder') and hasattr(model, 'mask_decoder'))


def build_model(config: Config) -> nn.Module:
    """Build ``config.model``: mmpretrain's registry for ``default_scope='mmpretrain'``
    configs (the headless backbones), mmdet's otherwise (SAM)."""
    from mmengine.registry import DefaultScope

    from .. import register_all_modules

    register_all_modules()

    model_cfg = config.model
    if config.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', config.data_preprocessor)
    if config.get('default_scope') == 'mmpretrain':
        from mmpretrain.registry import MODELS

        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return MODELS.build(model_cfg)
    from mmdet.registry import MODELS

    # SAM builds its parts from mmdet's and mmpretrain's registries itself
    return MODELS.build(model_cfg)


# ------------------------------------------------------------------ weights
def _is_url(value: str) -> bool:
    return urlparse(str(value)).scheme in ('http', 'https', 'ftp')


def cached_checkpoint_path(url: str) -> str:
    """Where ``url`` is kept: ``torch.hub.get_dir()/checkpoints/<file name>``."""
    name = osp.basename(urlparse(url).path)
    return osp.join(torch.hub.get_dir(), 'checkpoints', name)


def download_checkpoint(url: str, progress: bool = True) -> str:
    """The local path of ``url``'s file, downloading it into torch's hub cache once.

    Args:
        url: the weights' URL.
        progress: show a progress bar while downloading.

    Returns:
        The cached file's path; an existing file is used without any network access.

    Raises:
        CheckpointDownloadError: if the download fails (no network, HTTP error), naming
            the URL, the cache path to put the file at by hand and ``pretrained=path``.
    """
    path = cached_checkpoint_path(url)
    if osp.isfile(path):
        return path
    os.makedirs(osp.dirname(path), exist_ok=True)
    try:
        # writes to a temporary file and renames it at the end: never a partial file
        torch.hub.download_url_to_file(url, path, progress=progress)
    except Exception as e:  # noqa: BLE001  (URLError, HTTPError, OSError, timeouts, ...)
        raise CheckpointDownloadError(
            f'could not download {url} ({type(e).__name__}: {e}). Download it by other means '
            f'and put it at {path} (then it loads without network), or pass '
            "pretrained='/path/to/the/file.pth'"
        ) from e
    return path


def load_pretrained(model: nn.Module, checkpoint: str, layout: str = 'auto') -> dict:
    """Load a checkpoint of any known layout into an mmsam model, whole or not at all.

    The file is read, converted to mmsam's names in memory, and checked key by key
    and shape by shape against ``model`` before anything is copied (see
    :func:`mmsam.utils.checkpoint_loader.load_checkpoint_to_model`, the one loading
    path of the project). A headless model takes the image encoder of a full checkpoint.

    Args:
        model: a ``SAM`` or a headless ``ImageClassifier`` with a ``SAMImageEncoder``.
        checkpoint: a local file (``.pth``, ``.bin``, ``.safetensors``).
        layout: ``'auto'`` or one of ``'official'``, ``'hf'``, ``'mmsam'``, ``'mmpretrain'``.

    Returns:
        dict: ``layout`` (the source layout), ``ignored`` (keys left out on purpose:
        normalization buffers, or the prompt encoder and mask decoder for a headless
        model) and ``meta`` (the file's metadata, if any).

    Raises:
        FileNotFoundError: if the file does not exist.
        CheckpointLoadError: if it is not a readable checkpoint or not a SAM state dict.
        CheckpointMismatchError: if it does not fit the model (another size, another
            network); the model is left untouched.
    """
    return load_checkpoint_to_model(model, checkpoint, layout=layout)


# ------------------------------------------------------------------ get_model
def get_model(
    model: ModelSpec,
    pretrained: Union[bool, str, os.PathLike] = False,
    device: Optional[Union[str, torch.device]] = None,
    **kwargs,
) -> nn.Module:
    """Build a pre-defined SAM model (or one from a config) and load its weights.

    Args:
        model: a name from :func:`list_models` (case-insensitive), a config file path
            or a :class:`mmengine.config.Config`.
        pretrained: ``False`` (random weights), ``True`` (the metafile's weights, or the
            config's ``load_from``; downloaded once into
            ``torch.hub.get_dir()/checkpoints``), or a file path or URL. Official, Hugging
            Face, mmpretrain and mmsam files all load (converted in memory).
        device: where to put the model.
        **kwargs: overrides merged into ``config.model`` (e.g.
            ``backbone=dict(out_indices=(5, 11))``; see :func:`arch_overrides`).

    Returns:
        nn.Module: in eval mode; ``SAM`` for ``sam_vit-*`` names, an mmpretrain
        ``ImageClassifier`` whose ``extract_feat(Tensor[B, 3, 1024, 1024])`` returns
        ``(Tensor[B, 256, 64, 64],)`` for the headless ``vit-*_sam-pre_*`` names. The
        config is at ``model._config``, the metafile entry at ``model._metainfo``.

    Raises:
        ValueError: unknown name (the nearest are suggested), bad checkpoint.
        CheckpointMismatchError: weights that do not fit the model.
        CheckpointDownloadError: weights that cannot be downloaded.
    """
    config, metainfo = _load_config(model)
    if pretrained is True:
        if metainfo is not None and metainfo.get('Weights'):
            pretrained = metainfo['Weights']
        elif config.get('load_from'):
            pretrained = config.load_from
        else:
            raise ValueError(
                f'no pre-defined weights are known for {model!r}; pass pretrained=<file or URL>'
            )
    elif pretrained is False or pretrained is None:
        pretrained = None
    if kwargs:
        config.merge_from_dict({'model': kwargs})
    net = build_model(config)
    if pretrained is not None:
        path = str(pretrained)
        if _is_url(path):
            path = download_checkpoint(path)
        load_pretrained(net, path)
    if device is not None:
        net.to(device)
    net._config = config
    net._metainfo = metainfo
    return net.eval()
