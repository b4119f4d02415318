"""A small COCO-format dataset written on the fly, for evaluation tests.

Each image has a smooth background and a few filled shapes in distinct colours; every
shape's instance mask is exactly the set of pixels painted with its colour (a later
shape hides what it covers of an earlier one). Segmentations are stored as COCO's
compressed RLE, with one uncompressed RLE (``counts`` as a list) and one polygon
(whose pixels are painted from pycocotools' own rasterization, so the polygon is
exact too).

With ``bad_entries=True`` the annotation file also holds what real annotation files
hold and mmdet drops or ignores: an image without annotations, an image whose file
is missing, a crowd annotation, a zero-area box, an annotation of an image not in
``images``, one of a category the file does not declare, one without a segmentation.

The categories are COCO's by default; any others (a user's ``tumor``/``building``)
can be given. :func:`make_lvis_fixture` writes the same images as an LVIS v1 file
(``coco_url``, ``neg_category_ids``, ``not_exhaustive_category_ids``, frequencies).
"""

import json
import os
import os.path as osp
from typing import Dict, List, Optional

import cv2
import numpy as np
from pycocotools import mask as mask_api

from ..utils.atomic_file import atomic_write_json

#: COCO's ids and names for the first three classes, plus one outside COCO's list (declared,
#: without annotations); the shapes are drawn with the first three categories
CATEGORIES = [
    dict(id=1, name='person'),
    dict(id=2, name='bicycle'),
    dict(id=3, name='car'),
    dict(id=999, name='not_a_coco_class'),
]
#: the category of ``bad_entries``' annotation whose category the file does not declare
UNDECLARED_CATEGORY_ID = 998
#: (height, width) of the images: non-square, both orientations
IMAGE_SIZES = [(100, 150), (140, 90), (120, 120)]

#: what ``bad_entries=True`` adds, by audit reason (see mmsam.datasets.DROP_REASONS)
BAD_ENTRY_COUNTS = dict(
    empty_image=1,
    missing_file=1,
    crowd=1,
    degenerate=1,
    unknown_image=1,
    category=1,
    no_segmentation=1,
)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    tilt = rng.uniform(-0.6, 0.6, size=(3, 2))
    img = np.stack([base[c] + tilt[c, 0] * yy + tilt[c, 1] * xx for c in range(3)], -1)
    img += rng.normal(0, 4, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_mask(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
    rx, ry = int(rng.integers(w // 10, w // 4)), int(rng.integers(h // 10, h // 4))
    if kind == 'rectangle':
        cv2.rectangle(mask, (cx - rx, cy - ry), (cx + rx, cy + ry), 1, thickness=-1)
    elif kind == 'ellipse':
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(mask, (cx, cy), (rx, ry), angle, 0, 360, 1, thickness=-1)
    else:  # triangle
        pts = np.array([[cx - rx, cy + ry], [cx + rx, cy + ry], [cx, cy - ry]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def _polygon_mask(h: int, w: int, rng: np.random.Generator) -> tuple:
    """A quadrilateral as a COCO polygon and its pycocotools rasterization."""
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
    r = 0.22 * min(h, w)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 4))
    poly = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)
    flat = [round(float(v), 2) for v in poly.reshape(-1)]
    rle = mask_api.merge(mask_api.frPyObjects([flat], h, w))
    return [flat], mask_api.decode(rle).astype(bool)


def _box(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]


def _compressed(mask: np.ndarray) -> Dict:
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=[int(s) for s in rle['size']], counts=rle['counts'].decode('ascii'))


def _uncompressed(mask: np.ndarray) -> Dict:
    flat = mask.astype(np.uint8).reshape(-1, order='F')
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return dict(size=list(mask.shape), counts=[int(c) for c in counts])


def make_coco_fixture(
    root: str,
    seed: int = 0,
    bad_entries: bool = True,
    categories: Optional[List[dict]] = None,
) -> Dict[str, str]:
    """Write the images and ``annotations/instances_val2017.json`` under ``root``.

    Args:
        root (str): The data root (created if missing); images go to ``val2017/``.
        seed (int): Seed of the drawing (the same seed draws the same images and masks,
            whatever the categories).
        bad_entries (bool): Add the problem entries listed in :data:`BAD_ENTRY_COUNTS`.
        categories (list[dict], optional): The file's ``categories`` (``id``, ``name``);
            the shapes use the first three. Defaults to :data:`CATEGORIES`.

    Returns:
        dict: ``data_root``, ``ann_file`` (absolute) and ``img_dir``.
    """
    categories = CATEGORIES if categories is None else categories
    cat_ids = [c['id'] for c in categories[:3]]
    if len(cat_ids) < 3 or UNDECLARED_CATEGORY_ID in {c['id'] for c in categories}:
        raise ValueError(
            f'categories needs 3 or more entries and no id {UNDECLARED_CATEGORY_ID}, got '
            f'{categories}'
        )
    rng = np.random.default_rng(seed)
    img_dir = osp.join(root, 'val2017')
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    kinds = ['rectangle', 'ellipse', 'triangle']

    def add_ann(img_id, cat, mask, segmentation, **extra):
        ann = dict(
            id=len(annotations) + 1,
            image_id=img_id,
            category_id=cat,
            bbox=_box(mask),
            area=float(mask.sum()),
            iscrowd=0,
            segmentation=segmentation,
        )
        ann.update(extra)
        annotations.append(ann)
        return ann

    for index, (h, w) in enumerate(IMAGE_SIZES):
        img_id = 101 + index
        img = _background(h, w, rng)
        masks, cats = [], []
        polygon = None
        for k in range(3):
            if index == 0 and k == 2:
                polygon, mask = _polygon_mask(h, w, rng)
            else:
                mask = _shape_mask(kinds[(index + k) % 3], h, w, rng)
            for prev in masks:
                prev &= ~mask  # the new shape hides the old ones
            masks.append(mask)
            cats.append(cat_ids[(index + k) % 3])
        for mask in masks:
            img[mask] = rng.integers(0, 256, size=3)
        file_name = f'{img_id:012d}.png'
        cv2.imwrite(osp.join(img_dir, file_name), img)
        images.append(dict(id=img_id, file_name=file_name, height=h, width=w))
        for k, (mask, cat) in enumerate(zip(masks, cats)):
            if not mask.any():
                continue
            if polygon is not None and k == 2:
                seg = polygon
            elif index == 1 and k == 0:
                seg = _uncompressed(mask)
            else:
                seg = _compressed(mask)
            add_ann(img_id, cat, mask, seg)
        if bad_entries and index == 1:
            crowd = np.zeros((h, w), bool)
            crowd[: h // 5, : w // 5] = True
            add_ann(img_id, cat_ids[0], crowd, _uncompressed(crowd), iscrowd=1)
            ann = add_ann(img_id, cat_ids[1], crowd, _compressed(crowd))
            ann.update(bbox=[5.0, 5.0, 0.5, 10.0], area=0.0)  # degenerate box
            # a category the file does not declare
            add_ann(img_id, UNDECLARED_CATEGORY_ID, crowd, _compressed(crowd))
            ann = add_ann(img_id, cat_ids[2], crowd, [])
            ann.pop('segmentation')  # no segmentation at all
    if bad_entries:
        h, w = 64, 80
        cv2.imwrite(osp.join(img_dir, 'empty.png'), _background(h, w, rng))
        images.append(dict(id=201, file_name='empty.png', height=h, width=w))
        images.append(dict(id=202, file_name='missing.png', height=h, width=w))
        blob = np.zeros((h, w), bool)
        blob[10:30, 10:30] = True
        add_ann(202, cat_ids[0], blob, _compressed(blob))  # its image file does not exist
        add_ann(999999, cat_ids[0], blob, _compressed(blob))  # its image is not in "images"
    ann_file = osp.join(root, 'annotations', 'instances_val2017.json')
    atomic_write_json(dict(images=images, annotations=annotations, categories=categories), ann_file)
    return dict(data_root=root, ann_file=ann_file, img_dir=img_dir)


#: LVIS-style categories of :func:`make_lvis_fixture`: the three drawn ones, a fourth
#: (image 101's shape of category 3 is relabelled 4) and one without any instance
LVIS_CATEGORIES = [
    dict(id=1, name='apple', frequency='f'),
    dict(id=2, name='bead', frequency='c'),
    dict(id=3, name='cab_(taxi)', frequency='r'),
    dict(id=4, name='dartboard', frequency='r'),
    dict(id=5, name='eclair', frequency='c'),
]
#: image id -> (neg_category_ids, not_exhaustive_category_ids) of :func:`make_lvis_fixture`:
#: every image is labelled positive for the categories of its annotations, so category 4
#: is evaluated in images 101 (positive) and 102 (negative) but not in 103
LVIS_IMAGE_LABELS = {101: ([5], []), 102: ([4], [2]), 103: ([5], [1])}


def make_lvis_fixture(root: str, seed: int = 0) -> Dict[str, str]:
    """Write :func:`make_coco_fixture`'s clean images as an LVIS v1 annotation file,
    ``annotations/lvis_v1_val.json`` under ``root``.

    As in LVIS v1, images have no ``file_name`` but a ``coco_url`` (mmdet's
    ``LVISV1Dataset`` keeps its path after the host: ``val2017/<name>``, so the data
    prefix is ``''``), and the federated labels of :data:`LVIS_IMAGE_LABELS`; image
    101's shape of category 3 is of category 4 here;
    categories carry ``frequency``, ``synset``, ``image_count`` and ``instance_count``;
    annotations have no ``iscrowd``.

    Args:
        root (str): The data root (created if missing).
        seed (int): Seed of the drawing.

    Returns:
        dict: ``data_root``, ``ann_file`` (absolute) and ``img_dir``.
    """
    out = make_coco_fixture(root, seed=seed, bad_entries=False, categories=LVIS_CATEGORIES)
    with open(out['ann_file']) as f:
        coco = json.load(f)
    for img in coco['images']:
        img['coco_url'] = 'http://images.cocodataset.org/val2017/' + img.pop('file_name')
        neg, not_exhaustive = LVIS_IMAGE_LABELS[img['id']]
        img.update(neg_category_ids=neg, not_exhaustive_category_ids=not_exhaustive)
    for ann in coco['annotations']:
        ann.pop('iscrowd')
        if ann['image_id'] == 101 and ann['category_id'] == 3:
            ann['category_id'] = 4
    for cat in coco['categories']:
        anns = [a for a in coco['annotations'] if a['category_id'] == cat['id']]
        cat.update(
            synset=f'{cat["name"]}.n.01',
            image_count=len({a['image_id'] for a in anns}),
            instance_count=len(anns),
        )
    os.remove(out['ann_file'])
    ann_file = osp.join(root, 'annotations', 'lvis_v1_val.json')
    atomic_write_json(coco, ann_file)
    return dict(data_root=root, ann_file=ann_file, img_dir=out['img_dir'])
