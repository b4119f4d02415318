"""Tiling of huge images: the tile grid, prompt routing and the merge of per-tile masks.

Pure geometry on numbers and COCO RLEs (pycocotools): nothing here allocates an
``H x W`` array. A mask found in a tile is kept as a COCO RLE in the *image* frame
(:func:`mask_to_image_rle` encodes a tile-frame mask at its offset without padding
it to the image), and merging works on those RLEs only.

Merge rule (:func:`merge_tile_masks`), for masks found in different tiles:

1. **Union of fragments.** A mask is *cut* when its box reaches, within
   ``edge_tolerance`` pixels, an edge of its tile that is not an edge of the image.
   Two masks of two overlapping tiles are the same object when their IoU *inside the
   overlap zone* of the two tiles exceeds ``merge_iou``; when at least one of them is
   cut, they are unioned (transitively: an object over many tiles becomes one mask).
2. **NMS.** Of the resulting masks, two whose tile sets differ and whose mask IoU
   exceeds ``nms_iou`` are duplicates (an object inside an overlap zone, found whole
   by both tiles): the one with the lower score is dropped (the later one on ties).

Masks of the same tile are never merged nor suppressed against each other (the
per-tile segmenter already did its own NMS), so an image that fits in one tile gives
exactly the per-tile segmenter's masks.
"""

from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

RLE = Dict[str, object]


def _axis_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Starts of the tiles along one axis: evenly spread, first at 0, last ending at ``length``."""
    if length <= tile:
        return [0]
    n = int(np.ceil((length - overlap) / (tile - overlap)))
    n = max(n, 2)
    span = length - tile
    return [int(round(i * span / (n - 1))) for i in range(n)]


def tile_grid(height: int, width: int, tile_size: int, overlap: int) -> np.ndarray:
    """Overlapping tiles that cover an image, row by row.

    Along each axis of length ``L > tile_size``, ``n = ceil((L - overlap) / (tile_size -
    overlap))`` tiles of side ``tile_size`` are spread evenly from ``0`` to ``L``: every
    two neighbours overlap by at least ``overlap`` pixels (by ``tile_size - (L -
    tile_size) / (n - 1)``, rounded). An axis not longer than ``tile_size`` has one
    tile, the whole axis.

    Args:
        height (int): ``H``.
        width (int): ``W``.
        tile_size (int): Side of a tile in pixels.
        overlap (int): Least overlap of neighbouring tiles, ``0 <= overlap < tile_size``.

    Returns:
        np.ndarray: ``(T, 4)`` int64 XYXY tiles (exclusive ends), rows of tiles top to
        bottom, each row left to right.
    """
    height, width, tile_size, overlap = int(height), int(width), int(tile_size), int(overlap)
    if height < 1 or width < 1:
        raise ValueError(f'image size must be positive, got {height} x {width}')
    if tile_size < 1:
        raise ValueError(f'tile_size must be >= 1, got {tile_size}')
    if not 0 <= overlap < tile_size:
        raise ValueError(f'tile overlap must be in [0, tile_size = {tile_size}), got {overlap}')
    xs = _axis_starts(width, tile_size, overlap)
    ys = _axis_starts(height, tile_size, overlap)
    return np.array(
        [[x, y, min(x + tile_size, width), min(y + tile_size, height)] for y in ys for x in xs],
        dtype=np.int64,
    ).reshape(-1, 4)


def inner_edges(tile: Sequence[int], height: int, width: int) -> np.ndarray:
    """Which edges of a tile lie inside the image (are not the image's edges).

    Returns:
        np.ndarray: ``(4,)`` bool: left, top, right, bottom.
    """
    x0, y0, x1, y1 = (int(v) for v in tile)
    return np.array([x0 > 0, y0 > 0, x1 < width, y1 < height])


def is_cut_by_tile(
    box: Sequence[float], tile: Sequence[int], height: int, width: int, tolerance: float
) -> bool:
    """Whether a mask reaches an edge of its tile that is not an edge of the image.

    Args:
        box (Sequence[float]): The mask's XYXY box, image frame, exclusive ends.
        tile (Sequence[int]): The tile, XYXY, image frame.
        height (int): Image height.
        width (int): Image width.
        tolerance (float): Distance in pixels counted as reaching the edge.

    Returns:
        bool
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        return False
    tx0, ty0, tx1, ty1 = (float(v) for v in tile)
    near = np.array(
        [x0 <= tx0 + tolerance, y0 <= ty0 + tolerance, x1 >= tx1 - tolerance, y1 >= ty1 - tolerance]
    )
    return bool((near & inner_edges(tile, height, width)).any())


def route_prompt(
    extent: Sequence[float], tiles: np.ndarray, height: int, width: int
) -> Tuple[List[int], bool]:
    """The tile(s) a prompt goes to.

    A prompt whose extent (the box around its points and box) lies whole in some tile
    goes to one tile: among those that contain it, the one where it lies farthest
    from the tile's inner edges (the first in grid order on ties), so that the object
    around it has the most context. A prompt that no tile contains whole is split:
    it goes to every tile its extent overlaps (with positive area, or touching for a
    degenerate extent), where the caller clips it to the tile.

    Args:
        extent (Sequence[float]): XYXY extent of the prompt, image frame.
        tiles (np.ndarray): ``(T, 4)`` tiles of :func:`tile_grid`.
        height (int): Image height.
        width (int): Image width.

    Returns:
        tuple[list[int], bool]: The tile indices, and whether the prompt is split.
    """
    x0, y0, x1, y1 = (float(v) for v in extent)
    tiles = np.asarray(tiles, dtype=np.float64)
    inside = (tiles[:, 0] <= x0) & (tiles[:, 1] <= y0) & (tiles[:, 2] >= x1) & (tiles[:, 3] >= y1)
    if inside.any():
        best, best_margin = -1, -np.inf
        for t in np.flatnonzero(inside):
            tx0, ty0, tx1, ty1 = tiles[t]
            gaps = np.array([x0 - tx0, y0 - ty0, tx1 - x1, ty1 - y1])
            edges = inner_edges(tiles[t], height, width)
            margin = gaps[edges].min() if edges.any() else np.inf
            if margin > best_margin:
                best, best_margin = int(t), margin
        return [best], False
    ix0 = np.maximum(tiles[:, 0], x0)
    iy0 = np.maximum(tiles[:, 1], y0)
    ix1 = np.minimum(tiles[:, 2], x1)
    iy1 = np.minimum(tiles[:, 3], y1)
    wide = ix1 > ix0 if x1 > x0 else ix1 >= ix0
    tall = iy1 > iy0 if y1 > y0 else iy1 >= iy0
    return np.flatnonzero(wide & tall).tolist(), True


def overlap_zone(tile_a: Sequence[int], tile_b: Sequence[int]) -> Optional[np.ndarray]:
    """The XYXY rectangle two tiles share, or ``None`` when they share no pixel."""
    a = np.asarray(tile_a, dtype=np.int64)
    b = np.asarray(tile_b, dtype=np.int64)
    zone = np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])])
    return zone if zone[2] > zone[0] and zone[3] > zone[1] else None


def continuation_seeds(
    mask: np.ndarray,
    tile: int,
    tiles: np.ndarray,
    height: int,
    width: int,
    tolerance: int,
    skip: Set[int] = frozenset(),
) -> List[Tuple[int, Tuple[float, float], np.ndarray]]:
    """Where an object cut by its tile's edge goes on, and a point on it there.

    For each tile ``n`` (not in ``skip``) that reaches beyond an inner edge of ``tile``
    that the mask touches (within ``tolerance``) along that edge's part inside ``n``,
    the seed is the pixel of the mask inside the two tiles' overlap zone that lies
    farthest from the mask's border there (OpenCV's distance transform).

    Args:
        mask (np.ndarray): ``(h, w)`` bool, ``tile``'s frame.
        tile (int): Index of the mask's tile in ``tiles``.
        tiles (np.ndarray): ``(T, 4)`` XYXY tiles.
        height (int): Image height.
        width (int): Image width.
        tolerance (int): Distance in pixels counted as touching an edge.
        skip (set[int]): Tiles not to continue into.

    Returns:
        list[tuple[int, tuple[float, float], np.ndarray]]: ``(n, (x, y) image-frame seed,
        XYXY overlap zone)`` per tile to continue into.
    """
    import cv2

    x0, y0, x1, y1 = (int(v) for v in tiles[tile])
    h, w = mask.shape
    inner = inner_edges(tiles[tile], height, width)
    band = int(tolerance) + 1
    strips = [mask[:, :band], mask[:band, :], mask[:, w - band :], mask[h - band :, :]]
    if not any(inner[k] and strips[k].any() for k in range(4)):
        return []
    seeds = []
    near = (np.minimum(tiles[:, 2], x1) > np.maximum(tiles[:, 0], x0)) & (
        np.minimum(tiles[:, 3], y1) > np.maximum(tiles[:, 1], y0)
    )
    for n in np.flatnonzero(near).tolist():
        if n == tile or n in skip:
            continue
        zone = overlap_zone(tiles[tile], tiles[n])
        if zone is None:
            continue
        nx0, ny0, nx1, ny1 = (int(v) for v in tiles[n])
        rows = slice(int(zone[1]) - y0, int(zone[3]) - y0)
        cols = slice(int(zone[0]) - x0, int(zone[2]) - x0)
        # the sides of ``tile`` that ``n`` reaches beyond, and the mask along them in the zone
        crosses = [
            inner[0] and nx0 < x0 and mask[rows, :band].any(),
            inner[1] and ny0 < y0 and mask[:band, cols].any(),
            inner[2] and nx1 > x1 and mask[rows, w - band :].any(),
            inner[3] and ny1 > y1 and mask[h - band :, cols].any(),
        ]
        if not any(crosses):
            continue
        part = np.pad(mask[rows, cols], 1).astype(np.uint8)
        distance = cv2.distanceTransform(part, cv2.DIST_L2, 3)
        py, px = np.unravel_index(int(np.argmax(distance)), distance.shape)
        seeds.append((n, (float(zone[0] + px - 1), float(zone[1] + py - 1)), zone))
    return seeds


def zone_iou(rle_a: RLE, rle_b: RLE, zone: Sequence[int]) -> float:
    """IoU of two image-frame COCO RLEs inside the XYXY rectangle ``zone``."""
    return float(_zone_ious([rle_a], [rle_b], zone)[0, 0])


def _zone_ious(rles_a: Sequence[RLE], rles_b: Sequence[RLE], zone: Sequence[int]) -> np.ndarray:
    """``(len(rles_a), len(rles_b))`` IoUs of the masks' parts inside ``zone``."""
    from pycocotools import mask as mask_api

    height, width = (int(s) for s in rles_a[0]['size'])
    zone_rle = rectangle_rle(zone, height, width)
    part_a = [mask_api.merge([r, zone_rle], intersect=True) for r in rles_a]
    part_b = [mask_api.merge([r, zone_rle], intersect=True) for r in rles_b]
    return np.asarray(mask_api.iou(part_a, part_b, [0] * len(part_b))).reshape(
        len(rles_a), len(rles_b)
    )


def mask_to_image_rle(
    mask: np.ndarray, offset: Sequence[int], height: int, width: int
) -> Dict[str, object]:
    """COCO RLE, in the image frame, of a mask given in a tile at ``offset``.

    The RLE is built from the mask's own pixels (its box, column by column), so the
    cost is that of the tile, never of the ``H x W`` image.

    Args:
        mask (np.ndarray): ``(h, w)`` bool, the tile frame.
        offset (Sequence[int]): ``(x0, y0)`` of the tile in the image.
        height (int): Image height ``H``.
        width (int): Image width ``W``.

    Returns:
        dict: pycocotools' compressed RLE ``{'size': [H, W], 'counts': bytes}``.
    """
    from pycocotools import mask as mask_api

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f'mask must have shape (h, w), got {mask.shape}')
    x0, y0 = int(offset[0]), int(offset[1])
    if x0 < 0 or y0 < 0 or x0 + mask.shape[1] > width or y0 + mask.shape[0] > height:
        raise ValueError(
            f'a {mask.shape[1]} x {mask.shape[0]} mask at ({x0}, {y0}) does not fit in a '
            f'{width} x {height} image'
        )
    total = int(height) * int(width)
    cols = np.flatnonzero(mask.any(axis=0))
    if len(cols) == 0:
        counts = [total]
    else:
        rows = np.flatnonzero(mask.any(axis=1))
        crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        x0, y0 = x0 + int(cols[0]), y0 + int(rows[0])
        # one row per image column, padded with a background pixel above and below
        padded = np.zeros((crop.shape[1], crop.shape[0] + 2), dtype=bool)
        padded[:, 1:-1] = crop.T
        col, k = np.nonzero(padded[:, 1:] != padded[:, :-1])
        # a change between padded rows k and k + 1 starts a run at image row y0 + k
        pos = (x0 + col).astype(np.int64) * int(height) + y0 + k
        # a run that ends a column and one that starts the next touch: both changes cancel
        pos, times = np.unique(pos, return_counts=True)
        pos = pos[(times % 2 == 1) & (pos < total)]
        counts = np.diff(np.concatenate(([0], pos, [total]))).tolist()
    return mask_api.frPyObjects(
        {'size': [int(height), int(width)], 'counts': counts}, height, width
    )


def rectangle_rle(box: Sequence[int], height: int, width: int) -> Dict[str, object]:
    """COCO RLE of the XYXY rectangle ``box`` (exclusive ends) in an ``H x W`` image."""
    x0, y0, x1, y1 = (int(v) for v in box)
    ones = np.ones((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=bool)
    return mask_to_image_rle(ones, (x0, y0), height, width)


def rle_boxes(rles: Sequence[RLE]) -> np.ndarray:
    """XYXY boxes (exclusive ends) of COCO RLEs; zeros for empty masks.

    Returns:
        np.ndarray: ``(N, 4)`` float64.
    """
    from pycocotools import mask as mask_api

    if not len(rles):
        return np.zeros((0, 4))
    xywh = np.asarray(mask_api.toBbox(list(rles)), dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def _boxes_meet(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Whether ``box`` and each of ``boxes`` (XYXY) share pixels."""
    return (np.minimum(box[2], boxes[:, 2]) > np.maximum(box[0], boxes[:, 0])) & (
        np.minimum(box[3], boxes[:, 3]) > np.maximum(box[1], boxes[:, 1])
    )


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def merge_tile_masks(
    rles: Sequence[RLE],
    tile_ids: Sequence[int],
    scores: Sequence[float],
    cut: Sequence[bool],
    tiles: np.ndarray,
    merge_iou: float = 0.5,
    nms_iou: float = 0.7,
) -> List[Tuple[List[int], RLE]]:
    """Merge masks found tile by tile into the masks of the image (module docstring).

    Args:
        rles (Sequence[dict]): ``N`` COCO RLEs in the image frame (bytes counts).
        tile_ids (Sequence[int]): ``(N,)`` the tile each mask was found in.
        scores (Sequence[float]): ``(N,)`` scores (higher is better) for NMS.
        cut (Sequence[bool]): ``(N,)`` whether the mask reaches an inner tile edge
            (:func:`is_cut_by_tile`).
        tiles (np.ndarray): ``(T, 4)`` the tiles (:func:`tile_grid`).
        merge_iou (float): IoU inside an overlap zone above which two masks of two
            tiles are one object.
        nms_iou (float): Mask IoU above which two merged masks are duplicates.

    Returns:
        list[tuple[list[int], dict]]: The kept masks, in the order of their first
        member: the indices of the masks unioned into it (ascending) and its RLE (the
        input RLE itself for a single member).
    """
    from pycocotools import mask as mask_api

    n = len(rles)
    if not (len(tile_ids) == len(scores) == len(cut) == n):
        raise ValueError(
            f'rles, tile_ids, scores and cut must have one entry per mask, got {n}, '
            f'{len(tile_ids)}, {len(scores)} and {len(cut)}'
        )
    if n == 0:
        return []
    tiles = np.asarray(tiles, dtype=np.int64).reshape(-1, 4)
    tile_ids = np.asarray(tile_ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    cut = np.asarray(cut, dtype=bool)
    boxes = rle_boxes(rles)
    by_tile = {t: np.flatnonzero(tile_ids == t) for t in np.unique(tile_ids).tolist()}

    # 1. union of fragments across each overlap zone
    groups = _UnionFind(n)
    used = sorted(by_tile)
    for i, a in enumerate(used):
        for b in used[i + 1 :]:
            zone = overlap_zone(tiles[a], tiles[b])
            if zone is None:
                continue
            in_a = by_tile[a][_boxes_meet(zone, boxes[by_tile[a]])]
            in_b = by_tile[b][_boxes_meet(zone, boxes[by_tile[b]])]
            if not len(in_a) or not len(in_b):
                continue
            ious = _zone_ious([rles[k] for k in in_a], [rles[k] for k in in_b], zone)
            for p, q in zip(*np.nonzero(ious > merge_iou)):
                if cut[in_a[p]] or cut[in_b[q]]:
                    groups.union(int(in_a[p]), int(in_b[q]))
    members: Dict[int, List[int]] = {}
    for k in range(n):
        members.setdefault(groups.find(k), []).append(k)
    merged = []
    for root in sorted(members):
        ks = members[root]
        rle = rles[ks[0]] if len(ks) == 1 else mask_api.merge([rles[k] for k in ks])
        merged.append((ks, rle))

    # 2. NMS between masks of different tile sets
    m = len(merged)
    areas = np.array([float(mask_api.area(r)) for _, r in merged])
    group_scores = np.empty(m)
    for g, (ks, _) in enumerate(merged):
        weights = np.array([float(mask_api.area(rles[k])) for k in ks])
        w = weights if weights.sum() > 0 else np.ones(len(ks))
        group_scores[g] = float((scores[ks] * w).sum() / w.sum())
    tile_sets = [frozenset(tile_ids[ks].tolist()) for ks, _ in merged]
    group_boxes = rle_boxes([r for _, r in merged])
    order = np.argsort(-group_scores, kind='stable')
    dropped = np.zeros(m, dtype=bool)
    for rank, g in enumerate(order):
        if dropped[g] or areas[g] == 0:
            continue
        rest = order[rank + 1 :]
        rest = rest[~dropped[rest] & _boxes_meet(group_boxes[g], group_boxes[rest])]
        rest = np.array([h for h in rest if tile_sets[h] != tile_sets[g]], dtype=np.int64)
        if not len(rest):
            continue
        ious = np.asarray(mask_api.iou([merged[h][1] for h in rest], [merged[g][1]], [0])).reshape(
            -1
        )
        dropped[rest[ious > nms_iou]] = True
    return [merged[g] for g in range(m) if not dropped[g]]


__all__ = [
    'tile_grid',
    'inner_edges',
    'is_cut_by_tile',
    'route_prompt',
    'overlap_zone',
    'continuation_seeds',
    'zone_iou',
    'mask_to_image_rle',
    'rectangle_rle',
    'rle_boxes',
    'merge_tile_masks',
]
