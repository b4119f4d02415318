"""Run a folder job on many processes: ``torchrun`` or slurm, through mmengine's helpers.

``mmsam amg``, ``mmsam annotate`` and ``mmsam embed`` take ``--launcher
{none,pytorch,slurm}`` (as ``tools/test.py`` does; ``tools/dist_mmsam.sh`` and
``tools/slurm_mmsam.sh`` start them). Every process lists the same images (sorted), and
rank ``r`` of ``W`` takes ``images[r::W]`` (:func:`shard`): disjoint, together complete,
and the same on every rerun. Each image's outputs are written atomically by the job, so
a rank that dies leaves only finished images behind, and rerunning the same command
(with any number of processes) redoes exactly the missing ones. What is built from all
images (the COCO file of ``annotate``, the index of ``embed``) is written once, by rank
0, after a barrier (:func:`run_on_main_after_all`), from the per-image files in the
listing's order, so it equals a one-process run's byte for byte.

On a machine without CUDA the processes use the gloo backend
(:func:`mmsam.utils.dist.setup_cpu_dist_cfg` / :func:`~mmsam.utils.dist.init_cpu_dist`,
shared with ``tools/train.py`` and ``tools/test.py``); with CUDA, mmengine's
``init_dist`` (NCCL, one GPU per local rank).
"""

import argparse
import os
import subprocess
from typing import Callable, List, Sequence, Tuple, TypeVar

T = TypeVar('T')

LAUNCHERS = ('none', 'pytorch', 'slurm')

#: how many :func:`init_launcher` calls of this process have not been closed yet
_open_calls = 0


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--launcher`` and ``--local-rank`` (passed by ``torch.distributed.launch``)."""
    parser.add_argument(
        '--launcher',
        choices=LAUNCHERS,
        default='none',
        help='run as one of several processes started by torchrun (pytorch) or srun (slurm); '
        'each takes a disjoint share of the images (default: none, one process)',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)


def _slurm_to_env() -> None:
    """Export slurm's task layout as torch's ``env://`` variables (mmengine's rules)."""
    proc_id = int(os.environ['SLURM_PROCID'])
    os.environ.setdefault('RANK', str(proc_id))
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        first = subprocess.run(
            ['scontrol', 'show', 'hostnames', nodes], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        os.environ['MASTER_ADDR'] = first


def init_launcher(launcher: str, local_rank: int = 0) -> Tuple[int, int]:
    """Join the job's process group; ``(rank, world_size)``.

    Calls nest: within a process group already joined (a script that runs several
    jobs), the group is reused, and only the :func:`close_launcher` matching the call
    that joined it leaves it.

    Args:
        launcher (str): ``'none'`` (one process: ``(0, 1)``), ``'pytorch'`` (torchrun)
            or ``'slurm'`` (srun).
        local_rank (int): ``--local-rank`` from ``torch.distributed.launch``, used when
            the launcher did not set ``LOCAL_RANK``.

    Returns:
        tuple[int, int]: This process's rank and the number of processes.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {LAUNCHERS}, got {launcher!r}')
    if launcher == 'none':
        return 0, 1
    import torch
    import torch.distributed as dist
    from mmengine.config import Config
    from mmengine.dist import get_dist_info, init_dist

    from ..utils.dist import init_cpu_dist, setup_cpu_dist_cfg

    global _open_calls
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
    _open_calls += 1
    if not dist.is_initialized():
        if torch.cuda.is_available():
            init_dist(launcher)  # NCCL; sets this process's GPU
        else:
            if launcher == 'slurm':
                _slurm_to_env()
            cfg = Config(dict(launcher='pytorch'))
            init_cpu_dist(setup_cpu_dist_cfg(cfg))  # gloo
    return get_dist_info()


def shard(items: Sequence[T], rank: int, world_size: int) -> List[T]:
    """Rank ``rank``'s share of ``items``: every ``world_size``-th, from ``rank``.

    Strided rather than contiguous, so that sorted folders whose large images cluster
    (one camera, one sub-folder) spread the work evenly.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f'rank must be in [0, {world_size}), got {rank}')
    return list(items[rank::world_size])


def run_on_main_after_all(world_size: int, rank: int, merge: Callable[[], T]) -> T:
    """Wait for every rank (a barrier), then call ``merge()`` on rank 0 only.

    Returns:
        The result of ``merge()`` on rank 0; ``None`` on the other ranks.
    """
    if world_size > 1:
        from mmengine.dist import barrier

        barrier()
    return merge() if rank == 0 else None


def close_launcher(world_size: int) -> None:
    """Leave the process group joined by the matching :func:`init_launcher` call."""
    global _open_calls
    if world_size > 1 and _open_calls > 0:
        import torch.distributed as dist

        _open_calls -= 1
        if _open_calls == 0 and dist.is_initialized():
            dist.destroy_process_group()
