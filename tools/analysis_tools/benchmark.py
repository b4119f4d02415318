"""Time mmsam against the official ``segment_anything`` code, side by side.

Both models carry the same random weights (``mmsam.testing.build_sam_pair``) and get
the same inputs, in one process: warm-up runs, then ``--runs`` timed runs per case;
the table shows median and min seconds and the ratio official / mmsam (above 1 means
mmsam is faster). With ``--memory`` each case also runs once more in a fresh
subprocess per implementation to read its peak resident memory
(``resource.getrusage().ru_maxrss``; ``torch.cuda.max_memory_allocated`` on CUDA).

Example::

    python tools/analysis_tools/benchmark.py --arch base --cases encoder_b1,decoder_64box \\
        --runs 3 --json work_dirs/benchmark.json

Cases: ``encoder_b1``, ``encoder_b4`` (image encoder on normalized 1024 inputs),
``decoder_1pt``, ``decoder_64box`` (prompt encoder + mask decoder, low-resolution
logits), ``predictor`` (``set_image`` + ``predict`` of one point), ``amg_default`` and
``amg_relaxed`` (automatic mask generation with the official defaults, and with
``pred_iou_thresh = stability_score_thresh = 0.5``). Official rows are skipped when
``segment_anything`` is not installed; predictor/AMG rows when mmsam's
``SAMPredictor``/``AutomaticMaskGenerator`` cannot be imported.

``--model mobile_sam`` times MobileSAM instead: the official rows run the reference
``mobile_sam`` package (``sam_model_registry['vit_t']``), mmsam's rows the config
``configs/mobile_sam/mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px.py``, both on the same
seeded weights (``--arch`` and the sizes do not apply). ``--vit-baseline base`` adds mmsam's
SAM ViT-B (random weights) to the same run, for the encoder and AMG cases::

    python tools/analysis_tools/benchmark.py --model mobile_sam --vit-baseline base \
        --cases encoder_b1,amg_default --runs 3

``--model efficientvit_sam --arch l0`` (``l0``, ``l1``, ``l2``, ``xl0``, ``xl1``) times
EfficientViT-SAM the same way: the reference ``efficientsam`` package
(``create_efficientvit_sam_model``) against ``configs/efficientvit_sam/``, same seeded
weights; the encoder cases take the model's own input size (512 px for the L models)::

    python tools/analysis_tools/benchmark.py --model efficientvit_sam --arch l0 \
        --vit-baseline base --cases encoder_b1 --runs 3
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

CASES = (
    'encoder_b1',
    'encoder_b4',
    'decoder_1pt',
    'decoder_64box',
    'predictor',
    'amg_default',
    'amg_relaxed',
)
IMPLS = ('official', 'mmsam')
#: the extra implementation ``--vit-baseline`` adds (mmsam's SAM with a ViT encoder)
VIT_BASELINE = 'mmsam_vit'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark mmsam against the official SAM')
    parser.add_argument('--arch', default='base', help='tiny, small, base, large or huge')
    parser.add_argument(
        '--model',
        default='sam',
        choices=['sam', 'mobile_sam', 'efficientvit_sam'],
        help='sam (official segment_anything vs mmsam, --arch sizes), mobile_sam '
        '(official mobile_sam vs mmsam MobileSAM, 1024 px) or efficientvit_sam (efficientsam '
        'vs mmsam EfficientViT-SAM, --arch l0 ... xl1)',
    )
    parser.add_argument(
        '--vit-baseline',
        default=None,
        metavar='ARCH',
        help='also time mmsam SAM with this ViT (e.g. base) in the same run (encoder, AMG)',
    )
    parser.add_argument('--img-size', type=int, default=1024, help='model input side')
    parser.add_argument('--window-size', type=int, default=14)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--dtype', default='float32', help='mmsam autocast dtype: float32, bfloat16, float16'
    )
    parser.add_argument('--compile', action='store_true', help='torch.compile the encoder')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--cases', default=','.join(CASES), help='comma-separated; "all"')
    parser.add_argument('--image-hw', type=int, nargs=2, default=(768, 1024), metavar=('H', 'W'))
    parser.add_argument('--amg-points-per-side', type=int, default=32)
    parser.add_argument('--memory', action='store_true', help='peak memory per case')
    parser.add_argument('--no-official', action='store_true')
    parser.add_argument('--threads', type=int, default=None, help='torch threads')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', default=None, help='write results here')
    parser.add_argument('--child', nargs=2, metavar=('CASE', 'IMPL'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cases = CASES if args.cases == 'all' else tuple(c for c in args.cases.split(',') if c)
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f'--cases: unknown {unknown}; choose from {", ".join(CASES)}')
    args.cases = cases
    if args.runs < 1 or args.warmup < 0:
        parser.error('--runs must be >= 1 and --warmup >= 0')
    if args.model == 'mobile_sam':
        args.img_size = 1024  # the reference TinyViT is made for 1024 px inputs
    args.encoder_size = args.img_size
    if args.model == 'efficientvit_sam':
        from mmsam.models.backbones.sam_efficientvit import SAMEfficientViT

        if args.arch not in SAMEfficientViT.arch_zoo:
            parser.error(f'--arch: EfficientViT-SAM sizes are {sorted(SAMEfficientViT.arch_zoo)}')
        args.img_size = 1024  # SAM's frame; the encoder input is the size's own
        args.encoder_size = SAMEfficientViT.arch_zoo[args.arch]['input_size']
    return args


def _image(h: int, w: int, seed: int) -> np.ndarray:
    from mmsam.testing import smooth_image

    return smooth_image(h, w, seed=seed)


def _official_available(model: str = 'sam') -> bool:
    try:
        if model == 'mobile_sam':
            import mobile_sam  # noqa: F401
        elif model == 'efficientvit_sam':
            import efficientsam  # noqa: F401
        else:
            import segment_anything  # noqa: F401
    except ImportError:
        return False
    return True


def _with_run_options(model, args: argparse.Namespace, compile: bool = True):
    """An mmsam model with the run's autocast dtype (and ``--compile`` unless told not
    to), on the run's device."""
    options = dict(autocast_dtype=None if args.dtype in ('float32', 'fp32') else args.dtype)
    if compile:
        options['compile'] = args.compile
    model.set_speed_options(**options)
    return model.to(args.device)


def build_models(args: argparse.Namespace, impls=IMPLS, randomize: bool = True) -> Dict:
    """The models per implementation, same random weights when both are built."""
    from mmdet.registry import MODELS

    import mmsam.registration  # noqa: F401  (registers the modules)
    from mmsam.testing import build_official_sam, official_to_mmsam, sam_model_cfg

    models = {}
    if VIT_BASELINE in impls:
        from mmsam.testing import build_sam_pair

        vit = build_sam_pair(args.vit_baseline, 1024, 14, seed=args.seed)[1]
        models[VIT_BASELINE] = _with_run_options(vit, args, compile=False)
    if args.model == 'mobile_sam':
        from mmsam.testing.mobile_sam_parity import (
            build_official_mobile_sam,
            official_to_mmsam_mobile,
        )

        official = build_official_mobile_sam(seed=args.seed)
        if 'mmsam' in impls:
            models['mmsam'] = _with_run_options(official_to_mmsam_mobile(official), args)
        if 'official' in impls:
            models['official'] = official.to(args.device)
        return models
    if args.model == 'efficientvit_sam':
        from mmsam.testing.efficientvit_sam_parity import (
            build_official_efficientvit_sam,
            official_to_mmsam_efficientvit,
        )

        official = build_official_efficientvit_sam(args.arch, seed=args.seed)
        if 'mmsam' in impls:
            ours = official_to_mmsam_efficientvit(official, args.arch)
            models['mmsam'] = _with_run_options(ours, args)
        if 'official' in impls:
            models['official'] = official.to(args.device)
        return models
    official = None
    if 'official' in impls or randomize:
        official = build_official_sam(
            args.arch, args.img_size, args.window_size, seed=args.seed, randomize=randomize
        )
    if 'mmsam' in impls:
        if randomize:
            ours = official_to_mmsam(official, args.arch, window_size=args.window_size)
        else:  # memory runs: weight values do not matter, skip the second model
            cfg = sam_model_cfg(args.arch, img_size=args.img_size, window_size=args.window_size)
            ours = MODELS.build(cfg).eval()
        models['mmsam'] = _with_run_options(ours, args)
    if 'official' in impls:
        models['official'] = official.to(args.device)
    return models


def make_case(case: str, impl: str, model, args: argparse.Namespace) -> Optional[Callable]:
    """A no-argument callable running ``case`` on ``model``, or None when unavailable."""
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    size = args.img_size
    embed = size // 16
    if case in ('encoder_b1', 'encoder_b4'):
        side = size if impl == VIT_BASELINE else args.encoder_size
        x = torch.randn(1 if case == 'encoder_b1' else 4, 3, side, side, generator=gen).to(device)
        if impl == 'official':
            return lambda: model.image_encoder(x)
        return lambda: model.extract_feat(x)
    if case in ('decoder_1pt', 'decoder_64box'):
        emb = torch.randn(1, 256, embed, embed, generator=gen).to(device)
        points = boxes = None
        if case == 'decoder_1pt':
            points = (torch.tensor([[[0.3 * size, 0.4 * size]]]).to(device), torch.ones(1, 1))
            points = (points[0], points[1].to(device, torch.int64))
        else:
            xy = torch.rand(64, 2, 2, generator=gen) * size
            boxes = torch.cat([xy.min(1).values, xy.max(1).values], dim=1).to(device)
        if impl == 'official':

            def run():
                sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=None)
                return model.mask_decoder(
                    image_embeddings=emb,
                    image_pe=model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=True,
                )

            return run
        return lambda: model.predict_prompts(emb, points, boxes, None, True)
    image = _image(*args.image_hw, seed=args.seed)
    point = np.array([[args.image_hw[1] * 0.4, args.image_hw[0] * 0.5]])
    if case == 'predictor':
        if impl == 'official' and args.model == 'mobile_sam':
            from mobile_sam import SamPredictor as Predictor
        elif impl == 'official' and args.model == 'efficientvit_sam':
            from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor as Predictor
        elif impl == 'official':
            from segment_anything import SamPredictor as Predictor
        else:
            try:
                from mmsam.apis import SAMPredictor as Predictor
            except ImportError:
                return None
        predictor = Predictor(model)

        def run():
            predictor.set_image(image)
            return predictor.predict(point_coords=point, point_labels=np.array([1]))

        return run
    thresholds = {} if case == 'amg_default' else dict(pred_iou_thresh=0.5)
    if case == 'amg_relaxed':
        thresholds['stability_score_thresh'] = 0.5
    kwargs = dict(points_per_side=args.amg_points_per_side, **thresholds)
    if impl == 'official' and args.model == 'mobile_sam':
        from mobile_sam import SamAutomaticMaskGenerator as Generator
    elif impl == 'official' and args.model == 'efficientvit_sam':
        from efficientsam.models.efficientvit.sam import (
            EfficientViTSamAutomaticMaskGenerator as Generator,
        )
    elif impl == 'official':
        from segment_anything import SamAutomaticMaskGenerator as Generator
    else:
        try:
            from mmsam.apis import AutomaticMaskGenerator as Generator
        except ImportError:
            return None
    generator = Generator(model, **kwargs)
    return lambda: generator.generate(image)


def _sync(device: str) -> None:
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


def time_case(fn: Callable, args: argparse.Namespace) -> Dict:
    """Warm-up, then timed runs; wall and CPU seconds per run."""
    with torch.inference_mode():
        for _ in range(args.warmup):
            fn()
        _sync(args.device)
        times, cpu = [], []
        for _ in range(args.runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            _sync(args.device)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    # CPU seconds (all threads) help to read wall times taken on a busy machine
    return dict(
        times=times,
        median=statistics.median(times),
        min=min(times),
        cpu_times=cpu,
        cpu_median=statistics.median(cpu),
    )


def peak_memory_child(args: argparse.Namespace) -> None:
    """Run one case once and print the peak memory in MiB as JSON (subprocess side)."""
    case, impl = args.child
    models = build_models(args, impls=(impl,), randomize=False)
    fn = make_case(case, impl, models[impl], args)
    if fn is None:
        print(json.dumps(dict(peak_mib=None)))
        return
    cuda = torch.device(args.device).type == 'cuda'
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        fn()
    _sync(args.device)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        peak = kib / 1024 if sys.platform != 'darwin' else kib / 2**20
    print(json.dumps(dict(peak_mib=peak)))


def measure_peak_memory(case: str, impl: str, argv: List[str]) -> Optional[float]:
    """Peak memory (MiB) of ``case`` run once by ``impl`` in a fresh interpreter."""
    cmd = [sys.executable, os.path.abspath(__file__), *argv, '--child', case, impl]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f'memory run of {case}/{impl} failed:\n{proc.stderr[-2000:]}', file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])['peak_mib']


def environment() -> Dict:
    import mmsam

    info = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        mmsam=getattr(mmsam, '__version__', 'unknown'),
        machine=platform.machine(),
        processor=platform.processor(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
    )
    if torch.cuda.is_available():
        info['cuda_device'] = torch.cuda.get_device_name()
    return info


def format_table(rows: List[Dict]) -> str:
    header = (
        f'{"case":<15}{"official med (min) s":>24}{"mmsam med (min) s":>24}'
        f'{"official/mmsam":>16}{"peak MiB off/mm":>20}'
    )
    lines = [header, '-' * len(header)]

    def cell(r: Optional[Dict]) -> str:
        return 'n/a' if r is None else f'{r["median"]:.3f} ({r["min"]:.3f})'

    for row in rows:
        off, ours = row.get('official'), row.get('mmsam')
        ratio = f'{off["median"] / ours["median"]:.2f}x' if off and ours else 'n/a'
        mem = '/'.join(
            'n/a' if (r or {}).get('peak_mib') is None else f'{r["peak_mib"]:.0f}'
            for r in (off, ours)
        )
        lines.append(f'{row["case"]:<15}{cell(off):>24}{cell(ours):>24}{ratio:>16}{mem:>20}')
        vit = row.get(VIT_BASELINE)
        if vit and ours:
            lines.append(
                f'  mmsam ViT baseline {cell(vit)} s: ViT / mmsam '
                f'{vit["median"] / ours["median"]:.2f}x'
            )
        if row.get('note'):
            lines.append(f'  note: {row["note"]}')
    return '\n'.join(lines)


def _write_json(path: str, data: Dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: Optional[List[str]] = None) -> Dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        peak_memory_child(args)
        return {}
    impls = ('mmsam',) if args.no_official or not _official_available(args.model) else IMPLS
    vit_cases = ('encoder_b1', 'encoder_b4', 'amg_default', 'amg_relaxed')
    if args.vit_baseline:
        impls = impls + (VIT_BASELINE,)
    models = build_models(args, impls=impls)
    child_argv = [a for a in argv if a not in ('--memory',)]
    rows = []
    for case in args.cases:
        row: Dict = dict(case=case)
        notes = []
        for impl in impls:
            if impl == VIT_BASELINE and case not in vit_cases:
                continue
            fn = make_case(case, impl, models[impl], args)
            if fn is None:
                notes.append(f'{impl}: API not importable, skipped')
                continue
            result = time_case(fn, args)
            if args.memory:
                result['peak_mib'] = measure_peak_memory(case, impl, child_argv)
            row[impl] = result
            print(f'{case:<15}{impl:<10}median {result["median"]:.3f} s', flush=True)
        if 'official' not in impls:
            notes.append('official package not installed or disabled')
        row['note'] = '; '.join(notes)
        if row.get('official') and row.get('mmsam'):
            row['ratio'] = row['official']['median'] / row['mmsam']['median']
        if row.get(VIT_BASELINE) and row.get('mmsam'):
            row['vit_ratio'] = row[VIT_BASELINE]['median'] / row['mmsam']['median']
        rows.append(row)
    print(format_table(rows))
    report = dict(
        command=' '.join([os.path.relpath(__file__), *argv]),
        args={k: v for k, v in vars(args).items() if k != 'child'},
        environment=environment(),
        results=rows,
    )
    if args.json:
        _write_json(args.json, report)
    return report


if __name__ == '__main__':
    main()
