"""Images per second of ``mmsam embed`` on a folder: batch sizes, and 1 vs 2 processes.

Random weights (nothing is downloaded): the official layout of the chosen SAM is
built by ``segment_anything`` and saved once; a folder of synthetic images is written.
Then:

* ``batch``: the embedding job in this process (:func:`mmsam.cli.embed.embed_folder`,
  model loaded, one warm-up image first) at each ``--batch-sizes``;
* ``procs``: the whole ``mmsam embed`` command, 1 process (all threads) vs
  ``tools/dist_mmsam.sh`` with 2 processes (``OMP_NUM_THREADS`` = threads / 2 each),
  wall time including start-up.

Example::

    python tools/analysis_tools/embed_benchmark.py --arch vit_b --images 4 \\
        --batch-sizes 1 2 4 --json work_dirs/embed_benchmark.json
"""

import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

import torch
from PIL import Image

from mmsam.utils.collect_env import cpu_flags

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {
    'vit_b': 'sam_vit-base-p16_3rdparty_sa1b-1024px',
    'vit_l': 'sam_vit-large-p16_3rdparty_sa1b-1024px',
    'vit_h': 'sam_vit-huge-p16_3rdparty_sa1b-1024px',
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', choices=sorted(CONFIGS), default='vit_b')
    parser.add_argument('--images', type=int, default=4, help='images in the folder')
    parser.add_argument('--size', type=int, nargs=2, default=(480, 640), metavar=('H', 'W'))
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--skip-procs', action='store_true', help='no 1 vs 2 process run')
    parser.add_argument('--json', default=None, help='also write the results here')
    return parser.parse_args()


def main():
    args = parse_args()
    from segment_anything import sam_model_registry

    from mmsam.apis import get_model
    from mmsam.cli.embed import embed_folder
    from mmsam.testing import smooth_image

    tmp = tempfile.mkdtemp(prefix='embed_benchmark_')
    checkpoint = osp.join(tmp, f'sam_{args.arch}_random.pth')
    torch.manual_seed(0)
    torch.save(sam_model_registry[args.arch]().state_dict(), checkpoint)
    data = osp.join(tmp, 'images')
    os.makedirs(data)
    for i in range(args.images):
        Image.fromarray(smooth_image(*args.size, seed=i)).save(osp.join(data, f'im{i:03d}.png'))
    config = CONFIGS[args.arch]
    model = get_model(config, pretrained=checkpoint, device='cpu')
    warm = osp.join(tmp, 'warm')
    os.makedirs(warm)
    Image.fromarray(smooth_image(*args.size, seed=99)).save(osp.join(warm, 'w.png'))
    embed_folder(model, warm, osp.join(tmp, 'warm_store'), config)

    results = dict(
        arch=args.arch,
        images=args.images,
        size=list(args.size),
        threads=torch.get_num_threads(),
        cpu=cpu_flags(),
        batch={},
    )
    for batch_size in args.batch_sizes:
        start = time.perf_counter()
        embed_folder(model, data, osp.join(tmp, f'store_b{batch_size}'), config, batch_size)
        seconds = time.perf_counter() - start
        results['batch'][batch_size] = dict(seconds=seconds, images_per_s=args.images / seconds)
        print(f'batch {batch_size}: {args.images / seconds:.3f} images/s ({seconds:.1f} s)')
    del model
    if not args.skip_procs:
        best = max(results['batch'], key=lambda b: results['batch'][b]['images_per_s'])
        command = [data, '--model', config, '--weights', checkpoint, '--device', 'cpu']
        command += ['--batch-size', str(best)]
        threads = torch.get_num_threads()
        procs = {}
        for nproc in (1, 2):
            out = osp.join(tmp, f'store_p{nproc}')
            env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS=str(max(threads // nproc, 1)))
            if nproc == 1:
                cmd = [sys.executable, '-m', 'mmsam.cli', 'embed', *command, '--out', out]
            else:
                cmd = ['bash', osp.join(REPO, 'tools', 'dist_mmsam.sh'), 'embed', '2']
                cmd += [*command, '--out', out]
                env['PYTHON'] = sys.executable
                env['PORT'] = '29517'
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            procs[nproc] = dict(seconds=seconds, images_per_s=args.images / seconds)
            print(f'{nproc} process(es): {args.images / seconds:.3f} images/s ({seconds:.1f} s)')
        results['procs'] = {'batch_size': best, **{f'{n}_proc': v for n, v in procs.items()}}
        results['speed_up'] = procs[1]['seconds'] / procs[2]['seconds']
        print(f'2-process speed-up: {results["speed_up"]:.2f}x')
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
