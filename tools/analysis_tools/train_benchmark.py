"""Measure SAM fine-tuning cost: decoder-only throughput and full fine-tuning peak memory.

    python tools/analysis_tools/train_benchmark.py throughput [--steps 3 --instances 16]
    python tools/analysis_tools/train_benchmark.py memory     [--arch base]
    python tools/analysis_tools/train_benchmark.py memory --recipe decoder --instances 8

``throughput``: instances per second of decoder-only training steps (the recipe of
``configs/sam/sam_vit-base-p16_decoder-ft_8xb2-12e_coco-instance.py``: loss, backward,
AdamW step) on one synthetic 1024x1024 image, without the embedding cache (the encoder
runs every step) and with a warm cache (the encoder does not run).

``memory``: peak resident memory (CPU; ``ru_maxrss``) or peak allocated CUDA memory of
one training step: full fine-tuning (``--recipe full``) with and without gradient
checkpointing of the encoder (``with_cp``), or decoder-only (``--recipe decoder``) with
and without ``train_cfg.checkpoint_rounds`` (each round's decoding and loss recomputed
in the backward pass); each variant runs in its own process, so that the peaks
are separate.

Random weights: the cost does not depend on them. Prints a markdown table.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, 'configs', 'sam')
DECODER_FT = os.path.join(CONFIGS, 'sam_vit-base-p16_decoder-ft_8xb2-12e_coco-instance.py')
FULL_FT = os.path.join(CONFIGS, 'sam_vit-base-p16_full-ft-lrd_8xb2-12e_coco-instance.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='SAM fine-tuning benchmark')
    parser.add_argument('what', choices=['throughput', 'memory', 'memory-one'])
    parser.add_argument('--steps', type=int, default=3, help='timed steps (after one warm-up)')
    parser.add_argument('--instances', type=int, default=16, help='instances per image')
    parser.add_argument('--arch', default='base', help='encoder arch (base, large, huge)')
    parser.add_argument('--device', default='cuda' if _cuda() else 'cpu')
    parser.add_argument(
        '--recipe', choices=['full', 'decoder'], default='full', help='(memory) the recipe'
    )
    parser.add_argument('--with-cp', action='store_true', help='(memory-one) checkpointing')
    parser.add_argument(
        '--no-checkpoint-rounds',
        action='store_true',
        help='train_cfg.checkpoint_rounds=False (keep every round for the backward pass)',
    )
    parser.add_argument(
        '--low-res-loss', action='store_true', help='train_cfg.low_res_loss (loss at S / 4)'
    )
    return parser.parse_args(argv)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def build(config: str, device: str, checkpoint_rounds: bool = True, **backbone):
    """The recipe's model (random weights) and its optimizer wrapper."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    import mmsam.registration  # noqa: F401

    cfg = Config.fromfile(config)
    cfg.model.backbone.update(backbone)
    cfg.model.train_cfg['checkpoint_rounds'] = checkpoint_rounds
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model).to(device).train()
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return cfg, model, wrapper


def batch(num_instances: int, seed: int = 0):
    """One 1024x1024 image with ``num_instances`` rectangles (uint8, as loaded)."""
    import numpy as np
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, size=(3, 1024, 1024), dtype=np.uint8)
    masks = np.zeros((num_instances, 1024, 1024), bool)
    for i in range(num_instances):
        x, y = rng.integers(0, 800, size=2)
        w, h = rng.integers(40, 220, size=2)
        masks[i, y : y + h, x : x + w] = True
        img[:, masks[i]] = rng.integers(0, 255, size=(3, 1))
    sample = DetDataSample(metainfo=dict(img_id=0, img_path='bench.png'))
    sample.gt_instances = InstanceData(masks=torch.from_numpy(masks))
    return dict(inputs=[torch.from_numpy(img)], data_samples=[sample])


def step(model, wrapper, data) -> float:
    """One training step (what mmengine's ``train_step`` does); its wall time."""
    import torch

    start = time.perf_counter()
    with wrapper.optim_context(model):
        processed = model.data_preprocessor(data, True)
        losses = model(**processed, mode='loss')
    loss, _ = model.parse_losses(losses)
    wrapper.update_params(loss)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def throughput(args) -> list:
    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        for name, cache in (('no cache', None), ('embedding cache (warm)', cache_dir)):
            _, model, wrapper = build(DECODER_FT, args.device, arch=args.arch)
            model.train_cfg['low_res_loss'] = bool(args.low_res_loss)
            if cache is not None:
                model.train_cfg['embedding_cache'] = dict(cache_dir=cache)
            data = batch(args.instances)
            step(model, wrapper, data)  # warm-up (fills the cache)
            times = [step(model, wrapper, batch(args.instances)) for _ in range(args.steps)]
            per_step = sorted(times)[len(times) // 2]
            rows.append(
                (
                    f'decoder-only ViT-{args.arch[0].upper()}, {name}'
                    + (', low_res_loss' if args.low_res_loss else ''),
                    f'{args.instances / per_step:.3g} instances/s ({per_step:.2f} s/step)',
                )
            )
    return rows


def memory_one(args) -> dict:
    import torch

    config = FULL_FT if args.recipe == 'full' else DECODER_FT
    backbone = dict(arch=args.arch)
    if args.recipe == 'full':
        backbone['with_cp'] = bool(args.with_cp)
    checkpoint_rounds = not args.no_checkpoint_rounds
    _, model, wrapper = build(config, args.device, checkpoint_rounds, **backbone)
    model.train_cfg['low_res_loss'] = bool(args.low_res_loss)
    if args.device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    seconds = step(model, wrapper, batch(args.instances))
    if args.device.startswith('cuda'):
        peak = torch.cuda.max_memory_allocated() / 2**30
        kind = 'CUDA allocated'
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        kind = 'CPU resident'
    return dict(peak_gib=peak, kind=kind, seconds=seconds)


def memory(args) -> list:
    rows = []
    name = 'full fine-tuning' if args.recipe == 'full' else 'decoder-only'
    loss = 'low_res_loss' if args.low_res_loss else 'paper loss (full size)'
    for on in (False, True):
        cmd = [sys.executable, __file__, 'memory-one', '--arch', args.arch]
        cmd += ['--instances', str(args.instances), '--device', args.device]
        cmd += ['--recipe', args.recipe]
        cmd += ['--low-res-loss'] if args.low_res_loss else []
        if args.recipe == 'full':
            cmd += ['--with-cp'] if on else []
            label = f'with_cp={on}'
        else:
            cmd += [] if on else ['--no-checkpoint-rounds']
            label = f'checkpoint_rounds={on}'
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:  # e.g. killed by the out-of-memory killer
            result = f'failed (exit {proc.returncode}): {proc.stderr.strip()[-200:]}'
        else:
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            result = f'{res["peak_gib"]:.2f} GiB peak {res["kind"]} ({res["seconds"]:.1f} s/step)'
        rows.append(
            (
                f'{name} ViT-{args.arch[0].upper()}, {args.instances} instances, {loss}, {label}',
                result,
            )
        )
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.what == 'memory-one':
        print(json.dumps(memory_one(args)))
        return 0
    rows = throughput(args) if args.what == 'throughput' else memory(args)
    import torch

    print(
        f'device: {args.device}, torch {torch.__version__}, threads '
        f'{torch.get_num_threads()}, {platform.processor() or platform.machine()}'
    )
    print('| setting | result |\n| --- | --- |')
    for name, value in rows:
        print(f'| {name} | {value} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
