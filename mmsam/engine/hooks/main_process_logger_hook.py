"""mmengine's ``LoggerHook`` whose test metrics file is written by one process only."""

from typing import Dict, Optional

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import LoggerHook


@HOOKS.register_module()
class MainProcessLoggerHook(LoggerHook):
    """``LoggerHook`` that writes the test metrics JSON from the main process only.

    mmengine's ``LoggerHook.after_test_epoch`` dumps the metrics to
    ``<log_dir>/<timestamp>.json`` on every rank, and all ranks share the timestamp: with
    ``tools/dist_test.sh`` two processes write the same file at once and it can end up
    corrupted (two JSON documents interleaved). Here only the main process logs and writes it;
    the metrics are the same on every rank (the evaluator gathers them).
    """

    def after_test_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)
