"""The command line shared by tools/train.py and tools/test.py: config options, work
folder and distributed launch (also on machines without CUDA)."""

import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction


def add_launch_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--cfg-options``, ``--launcher`` and ``--local-rank`` (mmdet's tools)."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value (e.g. load_from=sam_vit-base.pth)',
    )
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='launcher'
    )
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """``args.config`` with ``--launcher``, ``--cfg-options`` and ``--work-dir`` applied.

    The work folder defaults to ``./work_dirs/<config name>``, as in mmdet's tools.
    """
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def set_local_rank(args: argparse.Namespace) -> argparse.Namespace:
    """Export ``--local-rank`` as ``LOCAL_RANK`` unless the launcher set it."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def setup_cpu_dist_cfg(cfg: Config) -> Config:
    """Adapt a config launched with ``--launcher`` to a machine without CUDA.

    NCCL needs GPUs, so the backend falls back to ``gloo``; DDP takes no
    ``device_ids`` for a CPU model (other ``model_wrapper_cfg`` settings, such as
    ``find_unused_parameters``, are kept). Nothing changes when CUDA is available or
    when ``cfg.launcher`` is ``'none'``.

    Args:
        cfg (Config): The config, with ``launcher`` set.

    Returns:
        Config: ``cfg``, changed in place.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return cfg
    # assigned back whole: Config.setdefault returns a converted copy of a plain dict,
    # so a change made through it would be lost on a config without ``env_cfg``
    env_cfg = dict(cfg.get('env_cfg') or {})
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return cfg


def init_cpu_dist(cfg: Config) -> None:
    """Join torchrun's process group on a machine without CUDA.

    mmengine's ``init_dist`` always selects a CUDA device first; the runner skips it
    when the process group exists already.
    """
    if cfg.get('launcher', 'none') == 'pytorch' and not torch.cuda.is_available():
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend=cfg.env_cfg.dist_cfg.backend)
