"""MainProcessLoggerHook writes the test metrics JSON on the main process only."""

import json
import os.path as osp
from types import SimpleNamespace

import pytest

import mmsam.engine.hooks.main_process_logger_hook as module
from mmsam.engine.hooks import MainProcessLoggerHook


def _runner(tmp_path):
    """What LoggerHook.after_test_epoch reads from a runner."""
    processor = SimpleNamespace(
        get_log_after_epoch=lambda runner, n, mode, with_non_scalar=False: (
            {'coco/mIoU@1': 0.5},
            'Epoch(test) coco/mIoU@1: 0.5',
        )
    )
    logger = SimpleNamespace(info=lambda *a, **k: None)
    return SimpleNamespace(
        log_processor=processor,
        test_dataloader=[0, 1],
        logger=logger,
        log_dir=str(tmp_path),
        timestamp='20261126_000000',
    )


@pytest.mark.parametrize('main', [True, False])
def test_only_the_main_process_writes_the_metrics(tmp_path, monkeypatch, main):
    monkeypatch.setattr(module, 'is_main_process', lambda: main)
    hook = MainProcessLoggerHook()
    runner = _runner(tmp_path)
    hook.before_run(runner)  # names the JSON file after the run's timestamp
    hook.after_test_epoch(runner, {'coco/mIoU@1': 0.5})
    path = osp.join(str(tmp_path), f'{runner.timestamp}.json')
    if main:
        with open(path) as f:
            assert json.load(f)['coco/mIoU@1'] == 0.5
    else:
        assert not osp.exists(path)
