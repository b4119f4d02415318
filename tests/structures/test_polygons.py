"""Polygons of masks decode back to the masks with pycocotools; RLE fall-back is logged.

The expected masks, areas and boxes come from pycocotools itself (``frPyObjects`` +
``merge`` + ``decode`` / ``area`` / ``toBbox``, and ``COCO.annToMask``) and from numpy on
the mask, never from :mod:`mmsam.structures.polygons`.
"""

import logging

import numpy as np
import pytest
from pycocotools import mask as mask_api
from pycocotools.coco import COCO

from mmsam.structures import (
    DEFAULT_POLYGON_MIN_IOU,
    mask_to_coco_polygons,
    mask_to_polygons,
    polygons_to_mask,
    segmentation_area_bbox,
)


def coco_decode(polygons, h, w):
    """pycocotools' decoding of one annotation's polygons (what ``annToMask`` does)."""
    rle = mask_api.merge(mask_api.frPyObjects(polygons, h, w))
    return mask_api.decode(rle).astype(bool)


def ann_to_mask(segmentation, h, w):
    """The same through ``COCO.annToMask`` on an in-memory dataset."""
    api = COCO()
    api.dataset = dict(
        images=[dict(id=1, height=h, width=w, file_name='x.png')],
        annotations=[dict(id=1, image_id=1, category_id=1, segmentation=segmentation)],
        categories=[dict(id=1, name='thing')],
    )
    api.createIndex()
    return api.annToMask(api.anns[1]).astype(bool)


def numpy_bbox(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def shoelace(poly):
    xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _masks():
    h, w = 24, 32
    out = {}
    m = np.zeros((h, w), bool)
    m[5, 3:20] = True  # horizontal 1-px line
    m[2:22, 25] = True  # vertical 1-px line
    out['thin_lines'] = m
    m = np.zeros((h, w), bool)
    idx = np.arange(15)
    m[idx + 3, idx + 4] = True  # 8-connected only: every pixel touches the next at a corner
    out['diagonal_line'] = m
    m = np.zeros((h, w), bool)
    idx = np.arange(12)
    m[idx + 2, 20 - idx] = True  # anti-diagonal
    m[idx + 2, 21 - idx] = True  # two pixels wide in x, still a staircase
    out['anti_diagonal'] = m
    m = np.zeros((h, w), bool)
    m[7, 9] = True
    out['single_pixel'] = m
    m = np.zeros((h, w), bool)
    m[0, 0] = m[h - 1, w - 1] = True  # corners of the image
    out['corner_pixels'] = m
    m = np.zeros((h, w), bool)
    m[2:20, 2:28] = True
    m[5:9, 5:12] = False  # two holes
    m[12:17, 15:25] = False
    m[14, 19] = True  # an island inside the second hole
    m[10, 20] = False  # a one-pixel hole
    out['holes_and_island'] = m
    m = np.zeros((h, w), bool)
    m[3:8, 3:8] = True
    m[8:12, 8:12] = True  # touches the first at one corner
    m[15:22, 1:30] = True
    m[0:3, 29:32] = True  # touches the border
    out['multi_part'] = m
    m = np.zeros((h, w), bool)
    m[4:20, 4:28] = True
    m[8:16, 8:24] = False
    out['ring'] = m
    out['speckled'] = np.random.default_rng(0).random((h, w)) < 0.5
    out['full'] = np.ones((h, w), bool)
    return out


MASKS = _masks()


@pytest.mark.parametrize('name', sorted(MASKS))
def test_polygons_decode_to_the_mask(name):
    mask = MASKS[name]
    h, w = mask.shape
    polygons = mask_to_polygons(mask)
    assert polygons and all(len(p) >= 8 and len(p) % 2 == 0 for p in polygons)
    np.testing.assert_array_equal(coco_decode(polygons, h, w), mask)
    np.testing.assert_array_equal(ann_to_mask(polygons, h, w), mask)
    # pixel-edge rings with holes cut in: the polygons' own area is the pixel count
    assert sum(shoelace(p) for p in polygons) == mask.sum()
    assert polygons_to_mask(polygons, h, w).dtype == bool


def test_random_masks_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(150):
        h, w = rng.integers(1, 20, 2)
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        polygons = mask_to_polygons(mask)
        if not mask.any():
            assert polygons == []
            continue
        np.testing.assert_array_equal(coco_decode(polygons, h, w), mask)


@pytest.mark.parametrize('name', sorted(MASKS))
def test_area_and_bbox_describe_the_written_segmentation(name):
    mask = MASKS[name]
    h, w = mask.shape
    seg = mask_to_coco_polygons(mask)
    assert isinstance(seg, list)  # exact polygons pass any threshold
    area, bbox = segmentation_area_bbox(seg, h, w)
    rle = mask_api.merge(mask_api.frPyObjects(seg, h, w))
    assert area == float(mask_api.area(rle)) == mask.sum()
    assert bbox == mask_api.toBbox(rle).tolist() == numpy_bbox(mask)


def test_area_and_bbox_of_rle_segmentations():
    mask = MASKS['holes_and_island']
    encoded = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    as_str = dict(encoded, counts=encoded['counts'].decode())
    for seg in (encoded, as_str):
        area, bbox = segmentation_area_bbox(seg, *mask.shape)
        assert area == mask.sum() and bbox == numpy_bbox(mask)


def test_simplified_polygons_fall_back_to_rle_with_a_log_line(log_records):
    mask = MASKS['thin_lines']
    h, w = mask.shape
    # a 1-px line simplified with a 2-px tolerance has no area left
    seg = mask_to_coco_polygons(mask, tolerance=2.0, name='img.png box 3')
    assert isinstance(seg, dict) and isinstance(seg['counts'], str)
    assert seg['size'] == [h, w]
    np.testing.assert_array_equal(ann_to_mask(seg, h, w), mask)
    area, bbox = segmentation_area_bbox(seg, h, w)
    assert area == mask.sum() and bbox == numpy_bbox(mask)
    messages = [r.getMessage() for r in log_records]
    assert len(messages) == 1 and 'img.png box 3' in messages[0] and 'RLE' in messages[0]
    assert log_records[0].levelno == logging.WARNING


def test_min_iou_decides_between_polygons_and_rle(log_records):
    yy, xx = np.mgrid[:80, :80]
    disk = np.hypot(yy - 40, xx - 40) < 30
    simplified = mask_to_polygons(disk, tolerance=1.0)
    decoded = coco_decode(simplified, 80, 80)
    iou = (decoded & disk).sum() / (decoded | disk).sum()
    assert 0.97 < iou < 1.0  # far from both thresholds below
    assert mask_to_coco_polygons(disk, min_iou=0.95, tolerance=1.0) == simplified
    assert log_records == []
    assert isinstance(mask_to_coco_polygons(disk, min_iou=0.999, tolerance=1.0), dict)
    assert len(log_records) == 1
    assert 0.9 <= DEFAULT_POLYGON_MIN_IOU < 1.0


def test_bad_input():
    with pytest.raises(ValueError, match='empty'):
        mask_to_coco_polygons(np.zeros((4, 4), bool), name='img.png box 0')
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        mask_to_polygons(np.zeros((1, 4, 4), bool))
    with pytest.raises(ValueError, match='tolerance'):
        mask_to_polygons(np.ones((4, 4), bool), tolerance=-1)
    with pytest.raises(ValueError, match='min_iou'):
        mask_to_coco_polygons(np.ones((4, 4), bool), min_iou=1.5)
    with pytest.raises(ValueError, match='coordinates'):
        polygons_to_mask([[0.0, 0.0, 1.0, 1.0]], 4, 4)
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []
    assert not polygons_to_mask([], 4, 4).any()
