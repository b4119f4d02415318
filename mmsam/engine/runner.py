"""mmengine's ``Runner`` with mmsam's checkpoint loading for ``load_from``.

mmengine loads ``load_from`` non-strictly: a file whose keys do not fit is logged as
missing/unexpected keys and the randomly initialised model is evaluated anyway.
``SAMRunner`` loads it through mmsam's one loading path instead
(:func:`mmsam.utils.checkpoint_loader.load_checkpoint_to_model`): any SAM layout
(official, Hugging Face ``.bin``/``.safetensors``, mmpretrain ``ViTSAM``, mmsam) is
converted in memory, every key and shape is checked, and a file that does not fit stops
the run with a :class:`~mmsam.utils.checkpoint_io.CheckpointLoadError` naming the file and
the keys, before any image is read. Resuming (``resume=True``) is mmengine's own.

Select it in a config with ``runner_type = 'SAMRunner'`` (mmsam's configs do, through
``configs/_base_/default_runtime.py``); ``tools/test.py`` and ``tools/train.py`` use it
whatever the config says.
"""

from mmdet.registry import RUNNERS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from ..utils.checkpoint_loader import load_checkpoint_to_model


@RUNNERS.register_module()
class SAMRunner(Runner):
    """An mmengine ``Runner`` whose ``load_from`` goes through mmsam's strict loader."""

    def load_or_resume(self) -> None:
        """Resume as mmengine does, or load ``load_from`` strictly (any SAM layout)."""
        if self._has_loaded or self._resume or self._load_from is None:
            return super().load_or_resume()
        path = str(self._load_from)
        if '://' in path:
            from ..apis.model_zoo import download_checkpoint

            path = download_checkpoint(path)
        info = load_checkpoint_to_model(self.model, path)
        ignored = f', ignored {len(info["ignored"])} keys' if info['ignored'] else ''
        self.logger.info(f'Loaded checkpoint {path} ({info["layout"]} layout{ignored})')
        self._has_loaded = True


def build_runner(cfg: Config) -> Runner:
    """The runner of ``tools/train.py`` and ``tools/test.py``.

    ``SAMRunner`` unless the config names another ``runner_type`` (mmengine's plain
    ``Runner`` is replaced too: it would load ``load_from`` non-strictly).

    Args:
        cfg (Config): The full config.

    Returns:
        Runner: built from ``cfg``.
    """
    runner_type = cfg.get('runner_type', 'Runner')
    if runner_type in ('Runner', 'SAMRunner'):
        return SAMRunner.from_cfg(cfg)
    from mmengine.registry import RUNNERS as ROOT_RUNNERS

    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdet')):
        return ROOT_RUNNERS.build(cfg)
