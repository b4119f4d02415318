"""Evaluate SAM from a config and a checkpoint (mmdet's tools/test.py for mmsam).

Examples::

    python tools/test.py configs/sam/sam_vit-base-p16_coco-val2017_box-prompt.py \\
        sam_vit-base.pth --cfg-options test_dataloader.dataset.data_root=data/coco/
    bash tools/dist_test.sh CONFIG CHECKPOINT 8          # 8 GPUs (torchrun)
    torchrun --nproc_per_node 2 tools/test.py CONFIG CHECKPOINT --launcher pytorch
"""

import argparse
import logging
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

from mmsam.utils.dist import (
    add_launch_args,
    config_from_args,
    init_cpu_dist,
    set_local_rank,
    setup_cpu_dist_cfg,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='mmsam: test (and evaluate) a SAM model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (any SAM layout mmsam loads)')
    parser.add_argument(
        '--work-dir', help='where to save the logs and metrics (default: ./work_dirs/CONFIG)'
    )
    parser.add_argument(
        '--out', help='dump the predictions and prompts to this pickle file (.pkl / .pickle)'
    )
    parser.add_argument('--show', action='store_true', help='show the predictions in a window')
    parser.add_argument('--show-dir', help='draw the predictions into this folder (in work_dir)')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per shown image')
    add_launch_args(parser)
    return set_local_rank(parser.parse_args(argv))


def check_args(args: argparse.Namespace) -> None:
    """Refuse what cannot work before the (slow) model and dataset are built."""
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file not found: {args.config}')
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint file not found: {args.checkpoint}')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'error: --out must end with .pkl or .pickle, got {args.out}')


def trigger_visualization_hook(cfg: Config, args: argparse.Namespace) -> Config:
    """Turn on drawing in the config's ``DetVisualizationHook``."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise SystemExit(
            'error: --show/--show-dir need default_hooks.visualization '
            "(dict(type='DetVisualizationHook'), see configs/_base_/default_runtime.py)"
        )
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        hook['test_out_dir'] = args.show_dir
    return cfg


def build_cfg(args: argparse.Namespace) -> Config:
    """The config with the command line applied."""
    cfg = config_from_args(args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    # CPU only: gloo instead of NCCL, DDP without device_ids
    return setup_cpu_dist_cfg(cfg)


def report_skipped(runner: Runner) -> int:
    """Log the images the dataset had to skip; their number (for the exit code)."""
    dataset = runner.test_dataloader.dataset
    audit = getattr(dataset, 'audit', None)
    missing = int(audit.get('missing_file', 0)) if audit is not None else 0
    if missing:
        print_log(
            f'{missing} image files of the annotation file were missing and not evaluated '
            '(see the dataset log line above); exit code 1',
            logger='current',
            level=logging.ERROR,
        )
    return missing


def main(argv=None) -> int:
    args = parse_args(argv)
    check_args(args)
    cfg = build_cfg(args)
    init_cpu_dist(cfg)
    from mmsam.datasets.annotation_audit import AnnotationFileError
    from mmsam.engine import build_runner
    from mmsam.utils.checkpoint_io import CheckpointLoadError

    try:
        runner = build_runner(cfg)
        # the checkpoint, strictly and in any SAM layout, before any data is read
        runner.load_or_resume()
    except (CheckpointLoadError, FileNotFoundError) as e:
        raise SystemExit(f'error: {e}') from None
    if args.out is not None:
        from mmsam.evaluation import DumpSAMResults

        runner.test_evaluator.metrics.append(DumpSAMResults(out_file_path=args.out))
    try:
        runner.test()
    except AnnotationFileError as e:  # nothing to evaluate, or an unusable annotation file
        raise SystemExit(f'error: {e}') from None
    return 1 if report_skipped(runner) else 0


if __name__ == '__main__':
    sys.exit(main())
