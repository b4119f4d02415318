"""``mmsam amg``: automatic mask generation over an image or a folder; SA-1B JSONs, overlays.

What ``mmsam amg`` and ``demo/amg_demo.py`` run. For each image ``<rel>`` (its path
relative to the input folder, extension included) it writes:

* ``<out_dir>/<rel>.json``: the SA-1B file (via :mod:`mmsam.apis.sa1b`); its
  ``image_id`` is :func:`~mmsam.apis.sa1b.sa1b_image_id` of ``<rel>``, stable across
  reruns and unique;
* ``<out_dir>/<rel>.overlay.png``: the masks drawn over the image (unless ``draw`` is
  off).

With a tiler (``--tile-size``, huge images), the image is read tile by tile
(:mod:`mmsam.apis.region_reader`), the generator runs on each tile and the masks are
merged across tiles (:class:`~mmsam.apis.tiled_segmentation.TiledSegmenter`); no
overlay is drawn (it would hold the whole image).

Keeping the extension makes the outputs of ``photo.jpg`` and ``photo.png`` distinct:
two inputs can never share an output. Files under ``out_dir`` are never read as input
(the output folder may lie inside the input folder).

Resume: ``<out_dir>/.resume/<rel>.key`` records the settings (generator options and
a fingerprint of the model's weights) and the image file's size and time stamp; an
image whose key matches and whose outputs exist is skipped, any other is redone. The
key is written last, so it marks a finished image.
"""

import argparse
import os
import os.path as osp

import numpy as np

from ..apis.image_io import load_image
from ..apis.mask_generator import AutomaticMaskGenerator
from ..apis.sa1b import sa1b_image_ids, write_sa1b
from ..structures.rle import coco_rle_to_mask
from ..utils.atomic_file import atomic_write, prepare_output_dir
from ..utils.fingerprints import file_stamp, settings_key
from ..visualization import overlay, save_png
from .common import UsageError, check_device, load_sam, print_report
from .distributed import close_launcher, init_launcher, shard
from .folder_jobs import BatchReport, list_job_images, model_fingerprint, run_over_images
from .parser import AMG_OPTIONS, tile_options

#: generator attributes that change its output (``points_per_batch`` and
#: ``upscale_chunk`` do not)
_GENERATOR_SETTINGS = (
    'point_grids',
    'pred_iou_thresh',
    'stability_score_thresh',
    'stability_score_offset',
    'box_nms_thresh',
    'crop_n_layers',
    'crop_nms_thresh',
    'crop_overlap_ratio',
    'min_mask_region_area',
    'output_mode',
)


def amg_output_paths(out_dir: str, rel: str) -> dict:
    """The files written for the image at relative path ``rel``.

    Returns:
        dict: ``json``, ``overlay`` and ``key`` (the resume key) paths.
    """
    base = osp.join(out_dir, rel)
    return dict(
        json=base + '.json',
        overlay=base + '.overlay.png',
        key=osp.join(out_dir, '.resume', rel + '.key'),
    )


def generator_settings_key(generator: AutomaticMaskGenerator) -> str:
    """A hash of what a generator's output depends on: its options and its weights."""
    settings = {}
    for name in _GENERATOR_SETTINGS:
        value = getattr(generator, name)
        if name == 'point_grids':
            value = [np.asarray(g, dtype=np.float64).round(12).tolist() for g in value]
        settings[name] = value
    return settings_key(settings=settings, weights=model_fingerprint(generator.model))


def tiler_settings_key(tiler) -> dict:
    """What a tiler's output depends on (all of its settings)."""
    keys = ('tile_size', 'tile_overlap', 'merge_iou', 'nms_iou', 'edge_tolerance')
    return {key: getattr(tiler, key) for key in keys}


class _AMGJob:
    """Generate, draw and write the masks of one image."""

    def __init__(self, generator, root, out_dir, draw, image_ids, key, tiler=None):
        self.tiler = tiler
        self.generator = generator
        self.root = root
        self.out_dir = out_dir
        self.draw = draw
        self.image_ids = image_ids
        self.key = key

    def rel(self, path: str) -> str:
        return osp.relpath(path, self.root).replace(os.sep, '/')

    def expected_key(self, path: str) -> str:
        size, mtime_ns = file_stamp(path)
        return f'{self.key} {size} {mtime_ns}\n'

    def is_done(self, path: str) -> bool:
        paths = amg_output_paths(self.out_dir, self.rel(path))
        if not osp.isfile(paths['json']) or osp.isfile(paths['overlay']) != self.draw:
            return False
        try:
            with open(paths['key'], encoding='utf-8') as f:
                return f.read() == self.expected_key(path)
        except OSError:
            return False

    def __call__(self, path: str) -> None:
        rel = self.rel(path)
        paths = amg_output_paths(self.out_dir, rel)
        if osp.exists(paths['key']):
            os.remove(paths['key'])  # not finished until the new key is written
        if self.tiler is not None:
            self._tiled(path, rel, paths)
            return
        image = load_image(path)
        records = self.generator.generate(image)
        if self.draw:
            order = sorted(range(len(records)), key=lambda i: -records[i]['area'])
            masks = np.array(
                [coco_rle_to_mask(records[i]['segmentation']) for i in order], dtype=bool
            ).reshape(-1, *image.shape[:2])
            save_png(paths['overlay'], overlay(image, masks))
        elif osp.exists(paths['overlay']):
            os.remove(paths['overlay'])  # an earlier run's, not this run's
        write_sa1b(
            paths['json'],
            records,
            image_id=self.image_ids[rel],
            file_name=rel,
            height=image.shape[0],
            width=image.shape[1],
        )
        with atomic_write(paths['key'], 'w') as f:
            f.write(self.expected_key(path))

    def _tiled(self, path: str, rel: str, paths: dict) -> None:
        """The tiled run of one image: read tile by tile, no overlay."""
        from ..apis.region_reader import open_region_reader

        reader = open_region_reader(path)
        try:
            records = self.tiler.generate(reader, self.generator)
            height, width = reader.height, reader.width
        finally:
            reader.close()
        if osp.exists(paths['overlay']):
            os.remove(paths['overlay'])  # an earlier run's, not this run's
        write_sa1b(paths['json'], records, self.image_ids[rel], rel, height=height, width=width)
        with atomic_write(paths['key'], 'w') as f:
            f.write(self.expected_key(path))


def amg_folder(
    generator: AutomaticMaskGenerator,
    inputs: str,
    out_dir: str,
    draw: bool = True,
    progress: bool = True,
    resume: bool = True,
    rank: int = 0,
    world_size: int = 1,
    tiler=None,
) -> BatchReport:
    """Run automatic mask generation on an image file or a folder (recursively).

    Args:
        generator (AutomaticMaskGenerator): Its ``output_mode`` must be ``'coco_rle'``
            (SA-1B stores COCO RLE).
        inputs (str): An image file or a folder.
        out_dir (str): Output folder; sub-folders mirror the input folder. It may lie
            inside the input folder (its files are not read as input) but not be it.
        draw (bool): Also write ``<rel>.overlay.png``.
        progress (bool): Show a progress bar.
        resume (bool): Skip images done by an earlier run with the same settings
            (see the module docstring); ``False`` redoes every image.
        rank (int): This process's rank: it does its share of the images
            (:func:`~mmsam.cli.distributed.shard`).
        world_size (int): The number of processes.
        tiler (TiledSegmenter, optional): Segment each image tile by tile (huge
            images; no overlay is drawn).

    Returns:
        BatchReport: Processed, skipped and failed images (with reasons).

    Raises:
        FileNotFoundError: ``inputs`` does not exist.
        ValueError: No image to process, or ``out_dir`` is the input folder.
        OSError: ``out_dir`` cannot be written (checked before any work).
    """
    if generator.output_mode != 'coco_rle':
        raise ValueError(
            "the generator's output_mode must be 'coco_rle' to write SA-1B files, "
            f'got {generator.output_mode!r}'
        )
    images = list_job_images(inputs, out_dir)
    prepare_output_dir(out_dir)
    root = inputs if osp.isdir(inputs) else osp.dirname(osp.abspath(inputs))
    rels = [osp.relpath(p, root).replace(os.sep, '/') for p in images]
    key = generator_settings_key(generator)
    if tiler is not None:
        draw = False
        key = settings_key(generator=key, tiling=tiler_settings_key(tiler))
    job = _AMGJob(generator, root, out_dir, draw, sa1b_image_ids(rels), key, tiler)
    mine = shard(images, rank, world_size)
    return run_over_images(
        mine, job, job.is_done if resume else None, 'amg', progress and rank == 0
    )


def run(args: argparse.Namespace) -> int:
    """``mmsam amg``: check the input and output folders, then run :func:`amg_folder`.

    Returns:
        int: The exit code (1 when an image failed).

    Raises:
        UsageError: Generator options that do not go together.
    """
    # the input and the output folder are checked before the model loads
    list_job_images(args.input, args.out_dir)
    prepare_output_dir(args.out_dir)
    device = check_device(args.device)
    options = {
        name.replace('-', '_'): getattr(args, name.replace('-', '_')) for name, *_ in AMG_OPTIONS
    }
    tiling = tile_options(args)
    tiler = None
    if tiling is not None:
        from ..apis.tiled_segmentation import TiledSegmenter

        try:
            tiler = TiledSegmenter(**tiling)
        except ValueError as err:
            raise UsageError(str(err)) from err
    sam = load_sam(args, device)
    try:
        generator = AutomaticMaskGenerator(sam, output_mode='coco_rle', **options)
    except ValueError as err:
        raise UsageError(str(err)) from err
    rank, world_size = init_launcher(args.launcher, args.local_rank)
    report = amg_folder(
        generator,
        args.input,
        args.out_dir,
        draw=not args.no_overlay,
        resume=not args.overwrite,
        rank=rank,
        world_size=world_size,
        tiler=tiler,
    )
    close_launcher(world_size)
    print(f'outputs in {args.out_dir}')
    return print_report(report)
