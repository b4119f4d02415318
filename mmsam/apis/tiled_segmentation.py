"""Segment images far larger than SAM's input by overlapping tiles, with prompts or AMG.

A tile is read (:mod:`.region_reader`: lazily for most TIFFs), encoded, decoded and
released before the next one, and each mask is kept only as a COCO RLE in the image
frame (:mod:`mmsam.structures.tiles`): memory is bounded by one tile in flight (its
pixels, its embedding and its masks) plus the RLEs found so far, never by ``H x W``.

* **Prompts** (:meth:`TiledSegmenter.segment_prompts`): each prompt (points and/or a
  box, image coordinates) goes to the one tile that holds it most centrally, or, when
  no tile holds it whole, is clipped to every tile it overlaps and its per-tile masks
  are unioned (:func:`~mmsam.structures.tiles.route_prompt`). One mask per prompt.
* **Everything** (:meth:`TiledSegmenter.generate`): the automatic mask generator runs
  on each tile (its point grid per tile) and the masks are merged across tile borders
  (:func:`~mmsam.structures.tiles.merge_tile_masks`: union of cut fragments that agree
  in an overlap zone, then NMS between tiles).

Records are SA-1B-like (:mod:`.sa1b`): ``segmentation`` is a COCO RLE of the whole
image (``str`` counts), ``bbox`` XYWH as SAM's generator gives it (``w`` = last column
minus first column), ``crop_box`` the tile(s) the mask came from. An image that fits in
one tile gives exactly what the predictor / generator give on the whole image.

The per-tile segmenters are duck-typed: ``predictor`` needs ``set_image(rgb)`` and
``predict(point_coords, point_labels, box, multimask_output) -> (masks (C, h, w),
scores (C,), logits)`` (:class:`~mmsam.apis.SAMPredictor`'s), ``generator`` needs
``generate(rgb) -> records`` (:class:`~mmsam.apis.AutomaticMaskGenerator`'s).
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..structures.mask_postprocess import select_best_candidate
from ..structures.rle import coco_rle_to_mask, rle_to_mask
from ..structures.tiles import (
    continuation_seeds,
    is_cut_by_tile,
    mask_to_image_rle,
    merge_tile_masks,
    rle_boxes,
    route_prompt,
    tile_grid,
    zone_iou,
)
from .region_reader import open_region_reader

Record = Dict[str, Any]


def _xywh(box: Sequence[float]) -> List[int]:
    """XYXY (exclusive ends) -> XYWH."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _sam_bbox(rle: dict) -> List[int]:
    """SAM's XYWH box of a mask: ``w`` = last column - first column (0 for an empty mask)."""
    x0, y0, x1, y1 = rle_boxes([rle])[0]
    return [int(x0), int(y0), max(int(x1 - x0) - 1, 0), max(int(y1 - y0) - 1, 0)]


def _text_rle(rle: dict) -> Dict[str, Any]:
    counts = rle['counts']
    return {
        'size': [int(s) for s in rle['size']],
        'counts': counts.decode('utf-8') if isinstance(counts, bytes) else counts,
    }


def _local_mask(segmentation: Any, shape) -> np.ndarray:
    """A generator record's mask (any output mode) as an ``(h, w)`` bool array."""
    if isinstance(segmentation, dict):
        if isinstance(segmentation.get('counts'), list):
            mask = rle_to_mask(segmentation)
        else:
            mask = coco_rle_to_mask(segmentation)
    else:
        mask = np.asarray(segmentation, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f'a per-tile mask has shape {mask.shape}, expected the tile {shape}')
    return mask


def _weighted(values: Sequence[float], areas: Sequence[float]) -> float:
    if len(values) == 1:
        return float(values[0])  # exactly the segmenter's value
    values = np.asarray(values, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    if areas.sum() <= 0:
        return float(values.mean())
    return float((values * areas).sum() / areas.sum())


class TiledSegmenter:
    """Overlapping tiles over a huge image; prompts or automatic masks merged into RLEs.

    Args:
        tile_size (int): Side of a tile in pixels (SAM's input side, 1024, keeps each
            tile at full resolution).
        tile_overlap (int): Least overlap of neighbouring tiles in pixels; objects up
            to about this size that cross a border are found whole by one tile.
        merge_iou (float): Fragments of two tiles whose IoU inside the tiles' overlap
            zone exceeds this are one object (unioned when one of them is cut).
        nms_iou (float): Masks of different tiles whose mask IoU exceeds this are
            duplicates (the lower predicted IoU is dropped).
        edge_tolerance (int): A mask within this many pixels of an inner tile edge is
            cut by it.
        max_prompt_tiles (int): Tiles a prompt's object may be followed over: the mask
            of a prompt held by one tile that is cut by the tile's edge is continued in
            the tiles beyond it (see :meth:`segment_prompts`); 1 never follows.
    """

    def __init__(
        self,
        tile_size: int = 1024,
        tile_overlap: int = 256,
        merge_iou: float = 0.5,
        nms_iou: float = 0.7,
        edge_tolerance: int = 2,
        max_prompt_tiles: int = 9,
    ) -> None:
        if int(tile_size) < 16:
            raise ValueError(f'tile_size must be >= 16 pixels, got {tile_size}')
        if not 0 <= int(tile_overlap) < int(tile_size):
            raise ValueError(
                f'tile_overlap must be in [0, tile_size = {tile_size}), got {tile_overlap}'
            )
        for name, value in (('merge_iou', merge_iou), ('nms_iou', nms_iou)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {value}')
        if int(edge_tolerance) < 0:
            raise ValueError(f'edge_tolerance must be >= 0, got {edge_tolerance}')
        if int(max_prompt_tiles) < 1:
            raise ValueError(f'max_prompt_tiles must be >= 1, got {max_prompt_tiles}')
        self.max_prompt_tiles = int(max_prompt_tiles)
        self.tile_size = int(tile_size)
        self.tile_overlap = int(tile_overlap)
        self.merge_iou = float(merge_iou)
        self.nms_iou = float(nms_iou)
        self.edge_tolerance = int(edge_tolerance)

    def tiles(self, height: int, width: int) -> np.ndarray:
        """``(T, 4)`` XYXY tiles of an ``H x W`` image (:func:`~.tiles.tile_grid`)."""
        return tile_grid(height, width, self.tile_size, self.tile_overlap)

    @staticmethod
    def _open(image):
        """``(reader, whether this call opened it)``; ``image`` may be an open reader."""
        if hasattr(image, 'read') and hasattr(image, 'height') and hasattr(image, 'width'):
            return image, False
        return open_region_reader(image), True

    # ------------------------------------------------------------------ prompts
    @staticmethod
    def _check_prompt(prompt: Dict[str, Any], index: int, height: int, width: int):
        """``(points (P, 2), labels (P,), box (4,) or None, extent XYXY)`` of a prompt."""
        if not isinstance(prompt, dict):
            raise ValueError(f'prompts[{index}] must be a dict, got {type(prompt).__name__}')
        unknown = set(prompt) - {'point_coords', 'point_labels', 'box'}
        if unknown:
            raise ValueError(
                f'prompts[{index}] has unknown keys {sorted(unknown)}; use point_coords, '
                'point_labels, box'
            )
        points = prompt.get('point_coords')
        points = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=np.float64)
        points = points.reshape(-1, 2)
        labels = prompt.get('point_labels')
        labels = np.ones(len(points)) if labels is None else np.asarray(labels).reshape(-1)
        if len(labels) != len(points):
            raise ValueError(
                f'prompts[{index}]: {len(points)} points but {len(labels)} point_labels'
            )
        box = prompt.get('box')
        box = None if box is None else np.asarray(box, dtype=np.float64).reshape(-1)
        if box is not None and (box.shape != (4,) or box[2] < box[0] or box[3] < box[1]):
            raise ValueError(
                f'prompts[{index}]: box must be x1, y1, x2, y2 with x2 >= x1, y2 >= y1'
            )
        if box is None and not (labels == 1).any():
            raise ValueError(f'prompts[{index}] needs a box or a foreground point (label 1)')
        corners = np.concatenate([points, box.reshape(2, 2) if box is not None else points[:0]])
        if (
            not np.isfinite(corners).all()
            or (corners < 0).any()
            or (corners > [width, height]).any()
        ):
            raise ValueError(
                f'prompts[{index}] reaches outside the {width} x {height} image: {corners.tolist()}'
            )
        extent = np.concatenate([corners.min(0), corners.max(0)])
        return points, labels, box, extent

    @staticmethod
    def _tile_prompt(points, labels, box, tile, split: bool) -> Optional[Dict[str, Any]]:
        """A prompt in a tile's frame (clipped when ``split``), or ``None`` if nothing is left."""
        x0, y0, x1, y1 = (float(v) for v in tile)
        if split:
            inside = (
                (points[:, 0] >= x0)
                & (points[:, 0] <= x1)
                & (points[:, 1] >= y0)
                & (points[:, 1] <= y1)
            )
            points, labels = points[inside], labels[inside]
            if box is not None:
                box = np.array([max(box[0], x0), max(box[1], y0), min(box[2], x1), min(box[3], y1)])
                if box[2] < box[0] or box[3] < box[1]:
                    box = None  # the tile holds only the prompt's points
            if box is None and not (labels == 1).any():
                return None
        local: Dict[str, Any] = {}
        if len(points):
            local['point_coords'] = points - [x0, y0]
            local['point_labels'] = labels
        if box is not None:
            local['box'] = box - [x0, y0, x0, y0]
        return local

    def segment_prompts(
        self,
        image: Any,
        predictor: Any,
        prompts: Sequence[Dict[str, Any]],
        progress: bool = False,
    ) -> List[Record]:
        """One mask per prompt on a huge image (see the module docstring).

        A prompt is one object: ``{'point_coords': (P, 2), 'point_labels': (P,), 'box':
        (4,)}`` in image pixels, any of them (``point_labels`` default to 1). As in
        ``mmsam segment``, a prompt that is a single point asks for SAM's three masks
        and keeps the one with the highest predicted IoU.

        Args:
            image: A file path, an ``(H, W, 3)`` array or an open region reader.
            predictor: :class:`~mmsam.apis.SAMPredictor` (or the same interface).
            prompts (Sequence[dict]): The prompts.
            progress (bool): Show a progress bar over the tiles.

        Returns:
            list[dict]: One record per prompt, in order: ``segmentation`` (COCO RLE,
            image frame), ``area``, ``bbox`` (XYWH), ``predicted_iou`` (the
            area-weighted mean over the tiles of a split prompt), ``point_coords``,
            ``point_labels``, ``box`` (the prompt), ``crop_box`` (XYWH around its
            tiles), ``tiles`` (their XYWH boxes) and ``cut`` (the mask reaches an edge
            of ``crop_box`` inside the image: the object may go on beyond it).

        A prompt held whole by a tile is answered in that tile (the most central one,
        so an object reaching no farther than about ``tile_overlap / 2`` from a point is
        whole there). When its mask is cut by the tile's edge, the object is followed: in
        each tile beyond that edge, a point on the mask inside the two tiles' overlap
        zone (the farthest from its border) is a new prompt, and its mask is unioned
        when it agrees with the first inside the zone (IoU above ``merge_iou``); and so
        on, over ``max_prompt_tiles`` tiles at most (``cut`` then tells whether the
        object may go on). A box that no tile holds whole is clipped to each tile it
        overlaps and the masks are unioned; a split prompt made of points gets a mask
        only in the tiles holding one of its foreground points. Split prompts are not
        followed.
        """
        from pycocotools import mask as mask_api

        reader, opened = self._open(image)
        try:
            height, width = reader.height, reader.width
            tiles = self.tiles(height, width)
            # tile -> [(prompt, its tile-frame prompt, the fragment it continues or None)]
            jobs: Dict[int, list] = {}
            parsed, visited, followed = [], [], []
            for i, prompt in enumerate(prompts):
                points, labels, box, extent = self._check_prompt(prompt, i, height, width)
                parsed.append((points, labels, box))
                ids, split = route_prompt(extent, tiles, height, width)
                visited.append(set(ids))
                followed.append(not split and self.max_prompt_tiles > 1)
                for t in ids:
                    local = self._tile_prompt(points, labels, box, tiles[t], split)
                    if local is not None:
                        jobs.setdefault(t, []).append((i, local, None))
            pieces: List[list] = [[] for _ in prompts]
            bar = self._progress(None, progress)
            while jobs:  # rounds: the routed prompts, then the objects they were cut from
                later: Dict[int, list] = {}
                for t in sorted(jobs):
                    self._prompt_tile(predictor, reader, tiles, t, jobs[t], pieces, later, followed)
                    for i, _, _ in jobs[t]:
                        visited[i].add(t)
                    if bar is not None:
                        bar.update(1)
                jobs = {}
                for t, entries in later.items():
                    for entry in entries:
                        i = entry[0]
                        if followed[i] and t not in visited[i]:
                            if len(visited[i]) < self.max_prompt_tiles:
                                visited[i].add(t)
                                jobs.setdefault(t, []).append(entry)
            if bar is not None:
                bar.close()
        finally:
            if opened:
                reader.close()
        records = []
        for (points, labels, box), found in zip(parsed, pieces):
            if not found:  # a degenerate prompt no tile could take: an empty mask
                empty = mask_to_image_rle(np.zeros((1, 1), bool), (0, 0), height, width)
                found = [(0, empty, 0.0)]
            rles = [r for _, r, _ in found]
            rle = rles[0] if len(rles) == 1 else mask_api.merge(rles)
            used = tiles[sorted({t for t, _, _ in found})]
            areas = [float(mask_api.area(r)) for r in rles]
            area_box = [*used[:, :2].min(0), *used[:, 2:].max(0)]
            cut = is_cut_by_tile(rle_boxes([rle])[0], area_box, height, width, self.edge_tolerance)
            records.append(
                {
                    'segmentation': _text_rle(rle),
                    'area': int(mask_api.area(rle)),
                    'bbox': _sam_bbox(rle),
                    'predicted_iou': _weighted([s for _, _, s in found], areas),
                    'point_coords': points.tolist(),
                    'point_labels': [int(v) for v in labels],
                    'box': None if box is None else box.tolist(),
                    'crop_box': _xywh(area_box),
                    'tiles': [_xywh(b) for b in used],
                    'cut': cut,
                }
            )
        return records

    def _prompt_tile(self, predictor, reader, tiles, t, entries, pieces, later, followed) -> None:
        """Decode the prompts of tile ``t``; queue where their cut objects go on.

        A continuation (an entry with a fragment to continue) is kept only when its mask
        agrees with that fragment inside the two tiles' overlap zone (IoU above
        ``merge_iou``): it is then the same object, and is unioned with the rest.
        """
        height, width = reader.height, reader.width
        predictor.set_image(reader.read(tiles[t]))
        for i, local, continued in entries:
            single = 'box' not in local and len(local['point_coords']) == 1
            masks, scores, _ = predictor.predict(**local, multimask_output=single)
            _, best_score, best_mask = select_best_candidate(
                np.asarray(scores).reshape(1, -1), np.asarray(masks)[None]
            )
            mask = best_mask[0]
            rle = mask_to_image_rle(mask, tiles[t][:2], height, width)
            if continued is not None:
                fragment, zone = continued
                if zone_iou(rle, fragment, zone) <= self.merge_iou:
                    continue  # another object: the fragment stays as it was
            pieces[i].append((t, rle, float(best_score[0])))
            if followed[i]:
                seeds = continuation_seeds(
                    mask, t, tiles, height, width, self.edge_tolerance, {p[0] for p in pieces[i]}
                )
                for n, (x, y), zone in seeds:
                    nx0, ny0 = (float(v) for v in tiles[n][:2])
                    prompt = {'point_coords': np.array([[x - nx0, y - ny0]]), 'point_labels': [1]}
                    later.setdefault(n, []).append((i, prompt, (rle, zone)))
        if hasattr(predictor, 'reset_image'):
            predictor.reset_image()  # the tile's embedding is not kept

    # ------------------------------------------------------------------ everything
    def generate(
        self,
        image: Any,
        generator: Any,
        max_tiles: Optional[int] = None,
        progress: bool = False,
    ) -> List[Record]:
        """Every mask of a huge image: the generator on each tile, merged across tiles.

        Args:
            image: A file path, an ``(H, W, 3)`` array or an open region reader.
            generator: :class:`~mmsam.apis.AutomaticMaskGenerator` (any
                ``output_mode``), or the same interface.
            max_tiles (int, optional): Only the first tiles, row by row (a preview, or
                a benchmark); default all.
            progress (bool): Show a progress bar over the tiles.

        Returns:
            list[dict]: SA-1B records (:func:`~mmsam.apis.sa1b.records_to_sa1b` takes
            them): ``segmentation`` (COCO RLE, image frame), ``area``, ``bbox``,
            ``predicted_iou``, ``stability_score`` (area-weighted means over the
            fragments of a merged mask), ``point_coords`` (each fragment's point),
            ``crop_box`` (image frame; around all fragments' crops).
        """
        from pycocotools import mask as mask_api

        reader, opened = self._open(image)
        rles, tile_ids, cut, fields = [], [], [], []
        try:
            height, width = reader.height, reader.width
            tiles = self.tiles(height, width)
            count = len(tiles) if max_tiles is None else min(int(max_tiles), len(tiles))
            for t in self._progress(range(count), progress):
                x0, y0, x1, y1 = (int(v) for v in tiles[t])
                for record in generator.generate(reader.read(tiles[t])):
                    local = _local_mask(record['segmentation'], (y1 - y0, x1 - x0))
                    rle = mask_to_image_rle(local, (x0, y0), height, width)
                    rles.append(rle)
                    tile_ids.append(t)
                    box = rle_boxes([rle])[0]
                    cut.append(is_cut_by_tile(box, tiles[t], height, width, self.edge_tolerance))
                    cx, cy, cw, ch = record['crop_box']
                    fields.append(
                        dict(
                            predicted_iou=float(record['predicted_iou']),
                            stability_score=float(record['stability_score']),
                            point_coords=[[p[0] + x0, p[1] + y0] for p in record['point_coords']],
                            crop_box=[cx + x0, cy + y0, cx + x0 + cw, cy + y0 + ch],
                        )
                    )
        finally:
            if opened:
                reader.close()
        merged = merge_tile_masks(
            rles,
            tile_ids,
            [f['predicted_iou'] for f in fields],
            cut,
            tiles,
            merge_iou=self.merge_iou,
            nms_iou=self.nms_iou,
        )
        records = []
        for members, rle in merged:
            parts = [fields[k] for k in members]
            areas = [float(mask_api.area(rles[k])) for k in members]
            crops = np.array([p['crop_box'] for p in parts])
            records.append(
                {
                    'segmentation': _text_rle(rle),
                    'area': int(mask_api.area(rle)),
                    'bbox': _sam_bbox(rle),
                    'predicted_iou': _weighted([p['predicted_iou'] for p in parts], areas),
                    'point_coords': [xy for p in parts for xy in p['point_coords']],
                    'stability_score': _weighted([p['stability_score'] for p in parts], areas),
                    'crop_box': _xywh([*crops[:, :2].min(0), *crops[:, 2:].max(0)]),
                }
            )
        return records

    @staticmethod
    def _progress(items, show: bool):
        """``items`` with a progress bar when ``show``; ``items=None``: a bar to update,
        or ``None``."""
        if not show:
            return items
        from tqdm import tqdm

        return tqdm(items, desc='tiles', unit='tile')


__all__ = ['TiledSegmenter']
