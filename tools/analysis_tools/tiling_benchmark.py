"""Peak memory and time of tiled segmentation on a huge synthetic TIFF (random weights).

Writes a ``--size`` x ``--size`` RGB TIFF (tiled 512 x 512, Deflate) chunk by chunk
(tifffile takes the tiles from a generator: the image is never held whole), then runs
:class:`mmsam.apis.tiled_segmentation.TiledSegmenter` on it in this process:

* ``--mode prompts``: one point prompt at the centre of every tile (or of the first
  ``--max-tiles``): every tile is read, encoded and decoded once;
* ``--mode amg``: the automatic mask generator on the first ``--max-tiles`` tiles,
  merged; the time of all tiles is extrapolated from these.

Peak memory is the process's peak RSS (``resource.getrusage``), read after the model
is built and after the run; the image's size in memory (``H * W * 3`` bytes) is
reported beside it. Models: ``tiny`` (a 2-layer, 64-dim ViT SAM at 1024 px, the
tests' arch: the memory of tiling itself) or ``mobile_sam`` (MobileSAM's config).

Example::

    python tools/analysis_tools/tiling_benchmark.py --size 20000 --mode prompts \\
        --json work_dirs/tiling_benchmark.json
"""

import argparse
import json
import os
import os.path as osp
import resource
import tempfile
import time

import numpy as np

MOBILE_SAM = 'mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px'
CHUNK = 512


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=20000, help='image side in pixels')
    parser.add_argument('--tiff', default=None, help='the TIFF (written when missing)')
    parser.add_argument('--mode', choices=('prompts', 'amg'), default='prompts')
    parser.add_argument('--model', choices=('tiny', 'mobile_sam'), default='tiny')
    parser.add_argument('--tile-size', type=int, default=1024)
    parser.add_argument('--tile-overlap', type=int, default=256)
    parser.add_argument('--max-tiles', type=int, default=None, help='default: all tiles')
    parser.add_argument('--points-per-side', type=int, default=16, help='AMG grid per tile')
    parser.add_argument(
        '--amg-thresh',
        type=float,
        nargs=2,
        default=(0.88, 0.95),
        metavar=('PRED_IOU', 'STABILITY'),
        help='AMG filters (default: the official 0.88 0.95; random weights pass none, '
        '0 0 keeps every mask, so that the merge has work)',
    )
    parser.add_argument(
        '--max-prompt-tiles',
        type=int,
        default=1,
        help='prompts: tiles an object is followed over (default 1: one pass per tile; '
        'random weights give masks that touch every edge, so following would multiply it)',
    )
    parser.add_argument('--json', default=None, help='also write the results here')
    return parser.parse_args(argv)


def _chunk(y0: int, x0: int) -> np.ndarray:
    """Pixels of the chunk at ``(y0, x0)``: discs of radius 100 on a 300 px lattice,
    each coloured by its lattice cell, on grey."""
    ys, xs = np.mgrid[y0 : y0 + CHUNK, x0 : x0 + CHUNK]
    i, j = ys // 300, xs // 300
    inside = (ys - i * 300 - 150) ** 2 + (xs - j * 300 - 150) ** 2 < 100**2
    colour = np.stack(
        [(i * 73 + j * 31) % 200 + 40, (i * 17 + j * 91) % 200 + 40, (i * 59 + j * 7) % 200 + 40],
        axis=-1,
    )
    out = np.full((CHUNK, CHUNK, 3), 128, dtype=np.uint8)
    out[inside] = colour[inside]
    return out


def write_tiff(path: str, size: int) -> float:
    """Write the synthetic image tile by tile; returns the seconds it took."""
    import tifffile

    start = time.perf_counter()
    tiles = (_chunk(y, x) for y in range(0, size, CHUNK) for x in range(0, size, CHUNK))
    tifffile.imwrite(
        path,
        tiles,
        shape=(size, size, 3),
        dtype=np.uint8,
        tile=(CHUNK, CHUNK),
        photometric='rgb',
        compression='zlib',
        bigtiff=True,
    )
    return time.perf_counter() - start


def build_model(name: str):
    import torch
    from mmdet.registry import MODELS

    import mmsam.registration  # noqa: F401
    from mmsam.apis import get_model
    from mmsam.testing import randomize_parameters, sam_model_cfg

    torch.manual_seed(0)
    if name == 'mobile_sam':
        return get_model(MOBILE_SAM, pretrained=False, device='cpu')
    model = MODELS.build(sam_model_cfg('tiny', img_size=1024, window_size=14))
    return randomize_parameters(model, seed=0).eval()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> dict:
    """Run the benchmark; returns (and prints) the results."""
    args = parse_args(argv)
    tiff = args.tiff or osp.join(tempfile.gettempdir(), f'mmsam_tiling_{args.size}.tif')
    write_seconds = None
    if not osp.isfile(tiff):
        write_seconds = write_tiff(tiff, args.size)
    after_write = peak_rss_mib()  # before torch is imported: the writer's own peak

    from mmsam.apis.mask_generator import AutomaticMaskGenerator
    from mmsam.apis.predictor import SAMPredictor
    from mmsam.apis.region_reader import open_region_reader
    from mmsam.apis.tiled_segmentation import TiledSegmenter

    imported = peak_rss_mib()
    model = build_model(args.model)
    tiler = TiledSegmenter(
        args.tile_size, args.tile_overlap, max_prompt_tiles=args.max_prompt_tiles
    )
    reader = open_region_reader(tiff)
    tiles = tiler.tiles(reader.height, reader.width)
    count = len(tiles) if args.max_tiles is None else min(args.max_tiles, len(tiles))
    before = peak_rss_mib()
    start = time.perf_counter()
    if args.mode == 'prompts':
        centres = (tiles[:count, :2] + tiles[:count, 2:]) / 2
        prompts = [{'point_coords': [c.tolist()], 'point_labels': [1]} for c in centres]
        records = tiler.segment_prompts(reader, SAMPredictor(model), prompts)
    else:
        generator = AutomaticMaskGenerator(
            model,
            points_per_side=args.points_per_side,
            pred_iou_thresh=args.amg_thresh[0],
            stability_score_thresh=args.amg_thresh[1],
            output_mode='coco_rle',
        )
        records = tiler.generate(reader, generator, max_tiles=count)
    seconds = time.perf_counter() - start
    reader.close()
    result = dict(
        tiff=tiff,
        tiff_mib=round(os.path.getsize(tiff) / 2**20, 1),
        reader=reader.description,
        image=[reader.height, reader.width],
        image_mib=round(reader.height * reader.width * 3 / 2**20, 1),
        mode=args.mode,
        model=args.model,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        max_prompt_tiles=args.max_prompt_tiles,
        amg=None
        if args.mode != 'amg'
        else dict(points_per_side=args.points_per_side, thresh=list(args.amg_thresh)),
        tiles_total=len(tiles),
        tiles_run=count,
        records=len(records),
        seconds=round(seconds, 1),
        seconds_per_tile=round(seconds / max(count, 1), 3),
        seconds_all_tiles_extrapolated=round(seconds / max(count, 1) * len(tiles), 1),
        write_seconds=None if write_seconds is None else round(write_seconds, 1),
        peak_rss_mib_after_write=round(after_write, 1),
        peak_rss_mib_imports=round(imported, 1),
        peak_rss_mib_model_built=round(before, 1),
        peak_rss_mib_end=round(peak_rss_mib(), 1),
        load_average=[round(v, 2) for v in os.getloadavg()],
    )
    print(json.dumps(result, indent=2))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
