"""Per-click mask latency of the ``mmsam serve`` page: in the browser and via the server.

Random weights (nothing is downloaded): each model is built with ``get_model(name)``,
its state dict saved once, and ``mmsam serve`` started on a folder holding one image
(a synthetic ``--size`` image, or ``--image``). Headless Chromium (selenium, Debian's
chromium) opens the page, waits for the embedding, then clicks ``--clicks`` seeded
points (a new prompt every ``--points-per-prompt`` clicks, the later ones alternating
negative and positive) and reads the page's own timings (``window.mmsam.timings``):

* ``ms``: from the click's handler to the mask drawn on the canvas;
* ``decodeMs``: the decoder call alone (onnxruntime-web's ``session.run`` plus
  thresholding, or the HTTP round trip to ``/api/decode`` with its RLE).

The two backends are ``browser`` (onnxruntime-web, WebAssembly, threads when the page
is cross-origin isolated) and ``server`` (the page opened with ``?backend=server``,
``SAMPredictor`` on the stored embedding). The first decode of each page load (session
warm-up) is reported apart and left out of the medians.

Example::

    python tools/analysis_tools/serve_benchmark.py --models vit_b mobile_sam \\
        --clicks 20 --json work_dirs/serve_benchmark.json
"""

import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from mmsam.utils.collect_env import cpu_flags

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODELS = {
    'vit_b': 'sam_vit-base-p16_3rdparty_sa1b-1024px',
    'vit_l': 'sam_vit-large-p16_3rdparty_sa1b-1024px',
    'vit_h': 'sam_vit-huge-p16_3rdparty_sa1b-1024px',
    'mobile_sam': 'mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px',
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', choices=sorted(MODELS), default=['vit_b'])
    parser.add_argument(
        '--backends', nargs='+', choices=('browser', 'server'), default=['browser', 'server']
    )
    parser.add_argument(
        '--wasm-threads',
        type=int,
        nargs='+',
        default=[0],
        help="onnxruntime-web threads to try (the page's ?threads=N; 0: the page's default, "
        'min(4, cores))',
    )
    parser.add_argument('--clicks', type=int, default=20, help='timed clicks per backend')
    parser.add_argument('--points-per-prompt', type=int, default=3)
    parser.add_argument('--size', type=int, nargs=2, default=(768, 1024), metavar=('H', 'W'))
    parser.add_argument('--image', default=None, help='an image file instead of --size')
    parser.add_argument('--port', type=int, default=0, help='(default: a free port)')
    parser.add_argument('--json', default=None, help='also write the results here')
    return parser.parse_args()


def _summary(values):
    values = sorted(values)
    return {
        'median': statistics.median(values),
        'p90': values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))],
        'min': values[0],
        'n': len(values),
    }


def _clicks(driver, count, per_prompt, size, seed):
    from mmsam.serve.browser import click_and_wait

    rng = np.random.default_rng(seed)
    height, width = size
    out = []
    for i in range(count):
        if i % per_prompt == 0:
            driver.execute_script('clearPrompt()')
        x, y = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        right = i % per_prompt != 0 and i % 2 == 1
        out.append(click_and_wait(driver, x, y, right=right, timeout=300))
    return out


def bench_model(key, args, tmp, browser_paths):
    from mmsam.apis import get_model
    from mmsam.serve.browser import free_port, headless_chrome, open_page, start_server, stop_server

    torch.manual_seed(0)
    checkpoint = osp.join(tmp, f'{key}_random.pth')
    torch.save(get_model(MODELS[key]).state_dict(), checkpoint)
    folder = osp.join(tmp, f'images_{key}')
    os.makedirs(folder)
    if args.image:
        image = Image.open(args.image).convert('RGB')
    else:
        from mmsam.testing import smooth_image

        image = Image.fromarray(smooth_image(*args.size, seed=0))
    image.save(osp.join(folder, 'image.png'))
    size = (image.height, image.width)
    port = args.port or free_port()
    command = [
        sys.executable,
        '-m',
        'mmsam.cli',
        'serve',
        folder,
        '--model',
        MODELS[key],
        '--weights',
        checkpoint,
        '--device',
        'cpu',
        '--port',
        str(port),
    ]
    started = time.perf_counter()
    proc = start_server(command, port, osp.join(tmp, f'server_{key}.log'), 600, cwd=REPO)
    result = {
        'model': MODELS[key],
        'image_size': list(size),
        'server_start_s': time.perf_counter() - started,
    }
    driver = headless_chrome(*browser_paths)
    try:
        runs = [('server', 0)] if 'server' in args.backends else []
        if 'browser' in args.backends:
            runs = [('browser', t) for t in args.wasm_threads] + runs
        for backend, threads in runs:
            query = '?backend=server' if backend == 'server' else ''
            query = f'?threads={threads}' if threads else query
            label = f'{backend}-{threads}threads' if threads else backend
            loaded = time.perf_counter()
            open_page(driver, f'http://127.0.0.1:{port}/{query}#image.png', timeout=900)
            load_s = time.perf_counter() - loaded  # the first: includes the embedding
            got = driver.execute_script('return window.mmsam.backend')
            if got != backend:
                raise RuntimeError(f'the page decodes on the {got}, not the {backend}')
            warm = _clicks(driver, 1, 1, size, seed=99)[0]
            timed = _clicks(driver, args.clicks, args.points_per_prompt, size, seed=0)
            used = driver.execute_script(
                "return typeof ort === 'undefined' ? null : ort.env.wasm.numThreads"
            )
            result[label] = {
                'page_load_s': load_s,
                'first_click_ms': warm['ms'],
                'click_ms': _summary([t['ms'] for t in timed]),
                'decode_ms': _summary([t['decodeMs'] for t in timed]),
                'wasm_threads': used if backend == 'browser' else None,
            }
            print(
                f'{key} {label}: median {result[label]["click_ms"]["median"]:.1f} ms per '
                f'click (p90 {result[label]["click_ms"]["p90"]:.1f}), first click '
                f'{warm["ms"]:.0f} ms, page load {load_s:.1f} s',
                flush=True,
            )
        result['chromium'] = driver.capabilities.get('browserVersion')
    finally:
        driver.quit()
        stop_server(proc)
    return result


def main():
    args = parse_args()
    from mmsam.serve import ort_missing
    from mmsam.serve.browser import find_browser

    browser_paths = find_browser()
    if browser_paths is None:
        sys.exit('serve_benchmark: chromium + chromedriver are missing (tools/setup_web.sh)')
    problem = ort_missing()
    if problem and 'browser' in args.backends:
        sys.exit(f'serve_benchmark: {problem}')
    with open(osp.join(REPO, 'mmsam/serve/static/package.json'), encoding='utf-8') as f:
        ort_version = json.load(f)['dependencies']['onnxruntime-web']
    results = {
        'uptime_before': subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip(),
        'cpu_flags': cpu_flags(),
        'cpus': os.cpu_count(),
        'onnxruntime_web': ort_version,
        'torch': torch.__version__,
        'models': {},
    }
    with tempfile.TemporaryDirectory(prefix='serve_benchmark_') as tmp:
        for key in args.models:
            results['models'][key] = bench_model(key, args, tmp, browser_paths)
    results['uptime_after'] = subprocess.run(
        ['uptime'], capture_output=True, text=True
    ).stdout.strip()
    print(json.dumps(results, indent=1))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
