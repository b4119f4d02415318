"""A synthetic COCO-format dataset of filled shapes, for training tests.

Each image has a smooth background and 2-3 filled rectangles, ellipses or triangles in
flat random colours; each shape's instance mask is the set of pixels painted with its
colour (a later shape hides what it covers of an earlier one). One category,
``shape``: SAM is class-agnostic. Masks are stored as compressed RLE.
"""

import os
import os.path as osp
from typing import Dict, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_api

from ..utils.atomic_file import atomic_write_json
from .coco_fixture import _background, _shape_mask

KINDS = ('rectangle', 'ellipse', 'triangle')


def _write_split(root: str, split: str, num_images: int, size: Tuple[int, int], rng) -> str:
    img_dir = osp.join(root, split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    h, w = size
    for index in range(num_images):
        img_id = index + 1
        img = _background(h, w, rng)
        masks = []
        for _ in range(int(rng.integers(2, 4))):
            mask = _shape_mask(KINDS[int(rng.integers(0, 3))], h, w, rng)
            for prev in masks:
                prev &= ~mask
            masks.append(mask)
        for mask in masks:
            img[mask] = rng.integers(0, 256, size=3)
        file_name = f'{img_id:06d}.png'
        cv2.imwrite(osp.join(img_dir, file_name), img)
        images.append(dict(id=img_id, file_name=file_name, height=h, width=w))
        for mask in masks:
            if mask.sum() < 16:
                continue
            ys, xs = np.nonzero(mask)
            rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=img_id,
                    category_id=1,
                    bbox=[
                        float(xs.min()),
                        float(ys.min()),
                        float(xs.max() - xs.min() + 1),
                        float(ys.max() - ys.min() + 1),
                    ],
                    area=float(mask.sum()),
                    iscrowd=0,
                    segmentation=dict(
                        size=[int(s) for s in rle['size']], counts=rle['counts'].decode('ascii')
                    ),
                )
            )
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    categories = [dict(id=1, name='shape')]
    atomic_write_json(dict(images=images, annotations=annotations, categories=categories), ann_file)
    return ann_file


def make_shapes_dataset(
    root: str,
    num_train: int = 16,
    num_val: int = 6,
    size: Tuple[int, int] = (96, 128),
    seed: int = 0,
) -> Dict[str, str]:
    """Write ``train/``, ``val/`` and ``annotations/instances_{train,val}.json`` under ``root``.

    Args:
        root (str): The data root (created if missing).
        num_train (int): Training images.
        num_val (int): Validation images (drawn after the training ones).
        size (tuple[int, int]): ``(height, width)`` of every image.
        seed (int): Seed of the drawing.

    Returns:
        dict: ``data_root``, ``train_ann_file`` and ``val_ann_file`` (absolute paths).
    """
    rng = np.random.default_rng(seed)
    train = _write_split(root, 'train', num_train, size, rng)
    val = _write_split(root, 'val', num_val, size, rng)
    return dict(data_root=root, train_ann_file=train, val_ann_file=val)
