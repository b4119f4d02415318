"""Fine-tune SAM from a config (mmdet's tools/train.py for mmsam).

Examples::

    python tools/train.py configs/sam/sam_vit-base-p16_decoder-ft_8xb2-12e_coco-instance.py \\
        --cfg-options load_from=sam_vit-base.pth train_dataloader.dataset.data_root=data/coco/
    python tools/train.py CONFIG --resume            # continue from the last checkpoint
    bash tools/dist_train.sh CONFIG 8                # 8 GPUs (torchrun); gloo on CPUs
"""

import argparse
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.logging import print_log

from mmsam.utils.dist import (
    add_launch_args,
    config_from_args,
    init_cpu_dist,
    set_local_rank,
    setup_cpu_dist_cfg,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='mmsam: train (fine-tune) a SAM model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--work-dir', help='where to save logs and checkpoints (default: ./work_dirs/CONFIG)'
    )
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision: AmpOptimWrapper (float16 by default) on a GPU, '
        'bfloat16 autocast (CPUAmpOptimWrapper) on a CPU-only machine',
    )
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='scale the lr by the total batch size'
    )
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or without a value from the latest one in work_dir',
    )
    add_launch_args(parser)
    return set_local_rank(parser.parse_args(argv))


AMP_WRAPPERS = ('AmpOptimWrapper', 'CPUAmpOptimWrapper')


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def use_cpu_amp(wrapper: Config) -> None:
    """Turn an ``AmpOptimWrapper`` config into mmsam's ``CPUAmpOptimWrapper`` (in place).

    mmengine's ``AmpOptimWrapper`` refuses to be built without a GPU, and CPU autocast
    supports bfloat16 only: on a CPU-only machine mixed precision is bfloat16 autocast
    without loss scaling (bfloat16 does not underflow as float16 does).
    """
    dtype = wrapper.pop('dtype', None)
    wrapper.pop('loss_scale', None)
    wrapper.pop('use_fsdp', None)
    wrapper.type = 'CPUAmpOptimWrapper'
    wrapper.dtype = 'bfloat16'
    note = '' if dtype in (None, 'bfloat16') else f" (instead of the config's {dtype})"
    print_log(
        f'AMP on the CPU: bfloat16 autocast{note}, no loss scaling (CPUAmpOptimWrapper)',
        logger='current',
    )


def build_cfg(args: argparse.Namespace) -> Config:
    """The config with the command line applied."""
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file not found: {args.config}')
    cfg = config_from_args(args)
    if args.amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') in AMP_WRAPPERS:
            print_log('AMP training is already enabled in the config', logger='current')
        else:
            wrapper.type = 'AmpOptimWrapper'
            wrapper.setdefault('loss_scale', 'dynamic')
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper' and not _cuda_available():
        use_cpu_amp(cfg.optim_wrapper)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit(
                'error: --auto-scale-lr needs auto_scale_lr = dict(base_batch_size=...) in '
                'the config'
            )
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise SystemExit(f'error: checkpoint to resume from not found: {args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume
    load_from = cfg.get('load_from')
    if load_from and '://' not in load_from and not osp.isfile(load_from):
        raise SystemExit(f'error: load_from checkpoint not found: {load_from}')
    return setup_cpu_dist_cfg(cfg)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = build_cfg(args)
    init_cpu_dist(cfg)
    import mmsam.registration  # noqa: F401
    from mmsam.engine import build_runner
    from mmsam.utils.checkpoint_io import CheckpointLoadError

    # SAMRunner: load_from strictly and from any SAM layout (official, HF, mmsam)
    runner = build_runner(cfg)
    try:
        runner.train()
    except CheckpointLoadError as e:
        raise SystemExit(f'error: {e}') from None
    return 0


if __name__ == '__main__':
    sys.exit(main())
