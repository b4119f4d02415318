"""Tile grid, prompt routing and the merge of per-tile masks (mmsam.structures.tiles).

Expected answers are worked out by hand or computed with pycocotools on dense masks.
"""

import numpy as np
import pytest
from pycocotools import mask as mask_api

from mmsam.structures.tiles import (
    is_cut_by_tile,
    mask_to_image_rle,
    merge_tile_masks,
    rectangle_rle,
    route_prompt,
    tile_grid,
)


def _coco(full: np.ndarray) -> dict:
    return mask_api.encode(np.asfortranarray(full.astype(np.uint8)))


def _dense(rle: dict) -> np.ndarray:
    return mask_api.decode(rle).astype(bool)


@pytest.mark.parametrize(
    'height, width, tile, overlap',
    [(1000, 1300, 256, 64), (256, 256, 256, 64), (100, 700, 256, 0), (513, 1024, 512, 128)],
)
def test_grid_covers_the_image_with_the_overlap_asked(height, width, tile, overlap):
    tiles = tile_grid(height, width, tile, overlap)
    cover = np.zeros((height, width), dtype=np.int64)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert x1 - x0 == min(tile, width) and y1 - y0 == min(tile, height)
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    for axis, length in ((0, width), (1, height)):
        starts = np.unique(tiles[:, axis])
        ends = np.unique(tiles[:, axis + 2])
        assert starts[0] == 0 and ends[-1] == length
        overlaps = ends[:-1] - starts[1:]
        if len(starts) > 1:
            assert overlaps.min() >= overlap  # neighbours overlap at least as asked
            assert overlaps.max() - overlaps.min() <= 1  # evenly spread


def test_grid_by_hand():
    # 1300 wide, tiles of 256 with 64 overlap: ceil(1236 / 192) = 7 tiles, starts i * 1044 / 6
    tiles = tile_grid(300, 1300, 256, 64)
    assert np.unique(tiles[:, 0]).tolist() == [0, 174, 348, 522, 696, 870, 1044]
    assert np.unique(tiles[:, 1]).tolist() == [0, 44]  # ceil(236 / 192) = 2 rows
    assert tile_grid(10, 20, 64, 16).tolist() == [[0, 0, 20, 10]]
    with pytest.raises(ValueError, match='overlap'):
        tile_grid(100, 100, 64, 64)


def test_routing_picks_the_most_central_tile_or_splits():
    tiles = tile_grid(256, 448, 256, 64)  # two tiles: x 0..256 and 192..448
    assert tiles.tolist() == [[0, 0, 256, 256], [192, 0, 448, 256]]
    assert route_prompt([10, 10, 10, 10], tiles, 256, 448) == ([0], False)
    assert route_prompt([400, 5, 400, 5], tiles, 256, 448) == ([1], False)
    # in the overlap zone, nearer the right tile's middle: 240 is 16 px from tile 0's inner
    # edge (256) and 48 px from tile 1's (192)
    assert route_prompt([240, 100, 240, 100], tiles, 256, 448) == ([1], False)
    assert route_prompt([200, 100, 200, 100], tiles, 256, 448) == ([0], False)
    # a box inside both: the one with the larger margin (tile 0: 256 - 230 = 26; tile 1: 0)
    assert route_prompt([195, 50, 230, 60], tiles, 256, 448) == ([0], False)
    # a box no tile holds whole: split over the tiles it overlaps
    assert route_prompt([100, 50, 300, 60], tiles, 256, 448) == ([0, 1], True)
    assert route_prompt([10, 50, 250, 60], tiles, 256, 448) == ([0], False)


def test_cut_flags_inner_edges_only():
    tile = [192, 0, 448, 256]  # right tile of a 448 x 256 image: inner edge on its left
    assert is_cut_by_tile([193, 20, 230, 40], tile, 256, 448, tolerance=2)
    assert not is_cut_by_tile([200, 20, 230, 40], tile, 256, 448, tolerance=2)
    assert not is_cut_by_tile([300, 0, 448, 256], tile, 256, 448, tolerance=2)  # image edges
    assert not is_cut_by_tile([0, 0, 0, 0], tile, 256, 448, tolerance=2)  # empty


def test_mask_to_image_rle_equals_pycocotools_on_the_padded_mask():
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        local = rng.random((h, w)) < rng.random()
        full = np.zeros((height, width), dtype=bool)
        full[y0 : y0 + h, x0 : x0 + w] = local
        assert mask_to_image_rle(local, (x0, y0), height, width)['counts'] == _coco(full)['counts']
    with pytest.raises(ValueError, match='does not fit'):
        mask_to_image_rle(np.ones((5, 5), bool), (8, 0), 10, 10)


def _fragments(height, width, tiles, pieces):
    """(RLEs, tile ids, cut flags) of hand-made masks ``(tile, y0, y1, x0, x1)`` in the image."""
    rles, tile_ids, cut = [], [], []
    for t, y0, y1, x0, x1 in pieces:
        full = np.zeros((height, width), dtype=bool)
        full[y0:y1, x0:x1] = True
        tx0, ty0, tx1, ty1 = tiles[t]
        assert not full[:, :tx0].any() and not full[:, tx1:].any()  # inside its tile
        rles.append(_coco(full))
        tile_ids.append(t)
        cut.append(is_cut_by_tile([x0, y0, x1, y1], tiles[t], height, width, tolerance=1))
    return rles, tile_ids, cut


def test_merge_unions_fragments_and_suppresses_duplicates():
    height, width = 100, 448
    tiles = tile_grid(height, width, 256, 64)  # x 0..256 and 192..448, overlap 192..256
    pieces = [
        (0, 10, 30, 150, 256),  # 0: rectangle x 150..350 cut by tile 0's right edge ...
        (1, 10, 30, 192, 350),  # 1: ... and by tile 1's left edge: one object, unioned
        (0, 50, 70, 200, 240),  # 2: inside the overlap zone, found whole by both tiles ...
        (1, 50, 70, 201, 240),  # 3: ... (nearly the same): a duplicate, lower score
        (0, 80, 95, 20, 60),  # 4: only in tile 0
        (1, 80, 95, 300, 400),  # 5: only in tile 1
        (1, 40, 48, 192, 210),  # 6: a sliver cut by tile 1's edge, nothing in tile 0 there
    ]
    rles, tile_ids, cut = _fragments(height, width, tiles, pieces)
    assert cut == [True, True, False, False, False, False, True]
    scores = [0.9, 0.8, 0.95, 0.9, 0.5, 0.5, 0.7]
    merged = merge_tile_masks(rles, tile_ids, scores, cut, tiles, merge_iou=0.5, nms_iou=0.7)
    assert [ks for ks, _ in merged] == [[0, 1], [2], [4], [5], [6]]
    expected = np.zeros((height, width), dtype=bool)
    expected[10:30, 150:350] = True
    np.testing.assert_array_equal(_dense(merged[0][1]), expected)
    # the duplicate with the higher score wins, whichever tile it came from
    scores[3] = 0.99
    merged = merge_tile_masks(rles, tile_ids, scores, cut, tiles)
    assert [ks for ks, _ in merged] == [[0, 1], [3], [4], [5], [6]]


def test_merge_keeps_different_objects_and_same_tile_masks_apart():
    height, width = 100, 448
    tiles = tile_grid(height, width, 256, 64)
    pieces = [
        (0, 10, 30, 150, 256),  # cut by tile 0's right edge
        (1, 10, 30, 230, 350),  # cut too, but overlaps piece 0 only in x 230..256 of the
        # zone x 192..256: zone IoU = 26 / 64 < 0.5 -> another object
        (0, 50, 60, 100, 200),  # two masks of tile 0 that overlap each other: never merged
        (0, 50, 60, 110, 200),
    ]
    rles, tile_ids, cut = _fragments(height, width, tiles, pieces)
    merged = merge_tile_masks(rles, tile_ids, [1, 1, 1, 1], cut, tiles)
    assert [ks for ks, _ in merged] == [[0], [1], [2], [3]]
    # with a lower zone IoU threshold the first two are one object
    merged = merge_tile_masks(rles, tile_ids, [1, 1, 1, 1], cut, tiles, merge_iou=0.3)
    assert [ks for ks, _ in merged][0] == [0, 1]


def test_merge_chains_an_object_over_four_tiles():
    height, width = 448, 448
    tiles = tile_grid(height, width, 256, 64)  # 2 x 2 tiles
    full = np.zeros((height, width), dtype=bool)
    full[100:350, 150:300] = True  # crosses both inner edges of every tile
    rles, tile_ids, cut = [], [], []
    for t, (x0, y0, x1, y1) in enumerate(tiles):
        piece = np.zeros_like(full)
        piece[y0:y1, x0:x1] = full[y0:y1, x0:x1]
        rles.append(_coco(piece))
        tile_ids.append(t)
        ys, xs = np.nonzero(piece)
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        cut.append(is_cut_by_tile(box, tiles[t], height, width, tolerance=1))
    merged = merge_tile_masks(rles, tile_ids, [0.9, 0.8, 0.7, 0.6], cut, tiles)
    assert len(merged) == 1 and merged[0][0] == [0, 1, 2, 3]
    np.testing.assert_array_equal(_dense(merged[0][1]), full)
    # IoU of the union with the object, as pycocotools computes it
    assert mask_api.iou([merged[0][1]], [_coco(full)], [0])[0, 0] == 1.0


def test_rectangle_rle_and_empty_input():
    rect = rectangle_rle([3, 2, 7, 9], 10, 12)
    expected = np.zeros((10, 12), dtype=bool)
    expected[2:9, 3:7] = True
    np.testing.assert_array_equal(_dense(rect), expected)
    assert merge_tile_masks([], [], [], [], tile_grid(10, 10, 8, 2)) == []
