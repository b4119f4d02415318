"""Automatic mask generation over an image or a folder: SA-1B JSONs and overlays.

What ``mmsam amg`` and ``demo/amg_demo.py`` run. For each image ``<rel>/<stem>.<ext>``
under the input folder it writes ``<out_dir>/<rel>/<stem>.json`` (SA-1B format, via
:mod:`mmsam.apis.sa1b`) and ``<out_dir>/<rel>/<stem>_overlay.png``. An image whose JSON
exists is skipped (resume); the JSON is written last, so it marks a finished image.
Image ids in the JSONs are the 1-based positions of the images in the sorted listing.
"""

import os
import os.path as osp

import numpy as np

from ..structures.rle import coco_rle_to_mask
from ..visualization import overlay, save_png
from .batch_runner import BatchReport, run_over_images
from .image_io import list_images, load_image
from .mask_generator import AutomaticMaskGenerator
from .sa1b import write_sa1b


class _AMGJob:
    """Generate, draw and write the masks of one image."""

    def __init__(self, generator: AutomaticMaskGenerator, root: str, out_dir: str, draw: bool):
        self.image_ids = {}
        self.generator = generator
        self.root = root
        self.out_dir = out_dir
        self.draw = draw

    def output_stem(self, path: str) -> str:
        rel = osp.relpath(path, self.root)
        return osp.join(self.out_dir, osp.splitext(rel)[0])

    def is_done(self, path: str) -> bool:
        return osp.isfile(self.output_stem(path) + '.json')

    def __call__(self, path: str) -> None:
        image = load_image(path)
        records = self.generator.generate(image)
        stem = self.output_stem(path)
        if self.draw:
            order = sorted(range(len(records)), key=lambda i: -records[i]['area'])
            masks = np.array(
                [coco_rle_to_mask(records[i]['segmentation']) for i in order], dtype=bool
            ).reshape(-1, *image.shape[:2])
            save_png(stem + '_overlay.png', overlay(image, masks))
        write_sa1b(
            stem + '.json',
            records,
            image_id=self.image_ids[path],
            file_name=osp.relpath(path, self.root).replace(os.sep, '/'),
            height=image.shape[0],
            width=image.shape[1],
        )


def amg_folder(
    generator: AutomaticMaskGenerator,
    inputs: str,
    out_dir: str,
    draw: bool = True,
    progress: bool = True,
    resume: bool = True,
) -> BatchReport:
    """Run automatic mask generation on an image file or a folder (recursively).

    Args:
        generator (AutomaticMaskGenerator): Its ``output_mode`` must be ``'coco_rle'``
            (SA-1B stores COCO RLE).
        inputs (str): An image file or a folder.
        out_dir (str): Output folder; sub-folders mirror the input folder.
        draw (bool): Also write ``<stem>_overlay.png``.
        progress (bool): Show a progress bar.
        resume (bool): Skip images whose JSON exists.

    Returns:
        BatchReport: Processed, skipped and failed images (with reasons).
    """
    if generator.output_mode != 'coco_rle':
        raise ValueError(
            "the generator's output_mode must be 'coco_rle' to write SA-1B files, "
            f'got {generator.output_mode!r}'
        )
    images = list_images(inputs)
    root = inputs if osp.isdir(inputs) else osp.dirname(osp.abspath(inputs))
    job = _AMGJob(generator, root, out_dir, draw)
    job.image_ids = {path: i for i, path in enumerate(images, start=1)}
    return run_over_images(images, job, job.is_done if resume else None, 'amg', progress)
