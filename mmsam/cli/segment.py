"""``mmsam segment``: prompted segmentation of one image file; overlay and mask files.

What ``mmsam segment`` and ``demo/image_demo.py`` run: parse the prompts, predict,
write the overlay and the masks.

Prompts:

* points only: all points together are one prompt (one object);
* one box (with or without points): one prompt;
* ``N > 1`` boxes: ``N`` prompts decoded together, the points (if any) added to each.

A prompt that is a single point is ambiguous; SAM then predicts three masks and the one
with the highest predicted IoU is kept (``multimask=True`` keeps all three).

With ``--tile-size`` (huge images), the same prompts are routed to overlapping tiles
(:class:`~mmsam.apis.tiled_segmentation.TiledSegmenter`) and the masks are written as
COCO RLEs of the whole image in ``<stem>_rle.json`` (no overlay or full-size mask files).
"""

import argparse
import glob
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..apis.image_io import load_image
from ..apis.predictor import SAMPredictor
from ..structures.mask_postprocess import select_best_candidate
from ..structures.prompts import check_box_order
from ..utils.atomic_file import atomic_write, atomic_write_json, prepare_output_dir
from ..visualization import overlay, save_mask_png, save_png
from .common import UsageError, check_device, load_sam
from .parser import tile_options


def parse_point(text: str) -> Tuple[float, float, int]:
    """Parse ``'x,y'`` or ``'x,y:label'`` (label 1 foreground, 0 background).

    Returns:
        tuple[float, float, int]: ``(x, y, label)``; the label defaults to 1.
    """
    coords, _, label = str(text).partition(':')
    try:
        x, y = (float(v) for v in coords.split(','))
        lab = int(label) if label else 1
    except ValueError as err:
        raise ValueError(
            f'bad point {text!r}: expected x,y or x,y:label with label 1 (foreground) '
            'or 0 (background), e.g. 120,80 or 120,80:0'
        ) from err
    if lab not in (0, 1):
        raise ValueError(f'bad point {text!r}: the label must be 1 (foreground) or 0 (background)')
    return x, y, lab


def parse_box(text: str) -> List[float]:
    """Parse ``'x1,y1,x2,y2'`` (pixels, ``x2 >= x1``, ``y2 >= y1``)."""
    try:
        box = [float(v) for v in str(text).split(',')]
    except ValueError:
        box = []
    if len(box) != 4:
        raise ValueError(f'bad box {text!r}: expected x1,y1,x2,y2, e.g. 10,20,200,180')
    try:
        check_box_order(np.array([box]))
    except ValueError as err:
        raise ValueError(f'bad box {text!r}: {err}') from None
    return box


def parse_prompts(
    points: Sequence[str], boxes: Sequence[str]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``'x,y[:label]'`` and ``'x1,y1,x2,y2'`` strings; at least one is needed.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: points ``(P, 2)``, labels ``(P,)``,
        boxes ``(N, 4)``.
    """
    parsed = [parse_point(p) for p in points]
    box_array = np.array([parse_box(b) for b in boxes], dtype=np.float64).reshape(-1, 4)
    point_array = np.array([p[:2] for p in parsed], dtype=np.float64).reshape(-1, 2)
    labels = np.array([p[2] for p in parsed], dtype=np.int64)
    if not parsed and not len(box_array):
        raise ValueError('give at least one --points x,y[:label] or --boxes x1,y1,x2,y2 prompt')
    return point_array, labels, box_array


def _check_inside(what: str, coords: np.ndarray, height: int, width: int) -> None:
    xs, ys = coords[..., 0], coords[..., 1]
    bad = (xs < 0) | (xs > width) | (ys < 0) | (ys > height)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(
            f'{what} {coords.reshape(-1, 2)[i].tolist()} is outside the image '
            f'({width} wide, {height} high)'
        )


def predict_prompts(
    predictor: SAMPredictor,
    points: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    boxes: Optional[np.ndarray] = None,
    multimask: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """Masks for the prompts on the image set in ``predictor`` (see the module docstring).

    Args:
        predictor (SAMPredictor): With an image set.
        points (np.ndarray, optional): ``(P, 2)`` ``(x, y)`` pixels.
        labels (np.ndarray, optional): ``(P,)`` 1 foreground / 0 background.
        boxes (np.ndarray, optional): ``(N, 4)`` XYXY pixels.
        multimask (bool): Keep the three candidate masks of every prompt.

    Returns:
        tuple[np.ndarray, np.ndarray]: masks ``(M, H, W)`` bool and scores ``(M,)``:
        one per prompt, or three per prompt with ``multimask``.
    """
    has_points = points is not None and len(points) > 0
    has_boxes = boxes is not None and len(boxes) > 0
    if not (has_points or has_boxes):
        raise ValueError('give at least one point or box prompt')
    height, width = predictor.original_size
    kwargs = {}
    if has_points:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        labels = np.ones(len(points)) if labels is None else np.asarray(labels).reshape(-1)
        _check_inside('point', points, height, width)
        kwargs.update(point_coords=points, point_labels=labels)
    if has_boxes:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        _check_inside('box corner', boxes.reshape(-1, 2, 2), height, width)
        if len(boxes) > 1:
            n = len(boxes)
            kwargs['box'] = boxes
            if has_points:
                kwargs['point_coords'] = np.repeat(points[None], n, axis=0)
                kwargs['point_labels'] = np.repeat(labels[None], n, axis=0)
        else:
            kwargs['box'] = boxes[0]
    ambiguous = has_points and not has_boxes and len(points) == 1
    masks, scores, _ = predictor.predict(multimask_output=multimask or ambiguous, **kwargs)
    if masks.ndim == 3:  # one prompt: (C, H, W) -> (1, C, H, W)
        masks, scores = masks[None], scores[None]
    if not multimask:
        _, scores, masks = select_best_candidate(scores, masks)
        masks, scores = masks[:, None], scores[:, None]
    return masks.reshape(-1, height, width), scores.reshape(-1)


def segment_image_file(
    predictor: SAMPredictor,
    image_path: str,
    out_dir: str,
    points: Sequence[str] = (),
    boxes: Sequence[str] = (),
    multimask: bool = False,
    save_masks: str = 'both',
) -> Dict[str, object]:
    """Segment one image file from text prompts and write the results.

    Writes ``<stem>_overlay.png`` (masks, points, boxes drawn), and, by ``save_masks``,
    ``<stem>_mask_<i>.png`` (0/255) and/or ``<stem>_masks.npy`` (``(M, H, W)`` bool),
    plus ``<stem>_masks.json`` (prompts and scores). Every file is written whole, and
    a rerun's files describe that run only: the ``<stem>_mask_<i>.png`` and
    ``<stem>_masks.npy`` of an earlier run that this run does not write (more masks
    then, another ``save_masks``) are removed.

    Args:
        predictor (SAMPredictor): Around the model to use.
        image_path (str): The image file (see :func:`mmsam.apis.load_image`).
        out_dir (str): Output folder (created).
        points (Sequence[str]): ``'x,y[:label]'`` strings (see :func:`parse_point`).
        boxes (Sequence[str]): ``'x1,y1,x2,y2'`` strings.
        multimask (bool): Keep three candidate masks per prompt.
        save_masks (str): ``'png'``, ``'npy'``, ``'both'`` or ``'none'``.

    Returns:
        dict: ``overlay`` (path), ``masks`` (paths), ``scores`` (list of float).
    """
    if save_masks not in ('png', 'npy', 'both', 'none'):
        raise ValueError(f"save_masks must be 'png', 'npy', 'both' or 'none', got {save_masks!r}")
    point_array, labels, box_array = parse_prompts(points, boxes)
    image = load_image(image_path)
    predictor.set_image(image)
    masks, scores = predict_prompts(predictor, point_array, labels, box_array, multimask)
    stem = osp.join(out_dir, osp.splitext(osp.basename(image_path))[0])
    prepare_output_dir(out_dir)
    written = write_mask_files(stem, masks, save_masks)
    atomic_write_json(
        dict(
            image=image_path,
            points=point_array.tolist(),
            point_labels=labels.tolist(),
            boxes=box_array.tolist(),
            scores=[float(s) for s in scores],
            areas=[int(m.sum()) for m in masks],
        ),
        f'{stem}_masks.json',
    )
    drawn = overlay(image, masks, points=point_array, point_labels=labels, boxes=box_array)
    overlay_path = save_png(f'{stem}_overlay.png', drawn)
    remove_stale_masks(stem, written)
    return dict(overlay=overlay_path, masks=written, scores=[float(s) for s in scores])


def prompt_dicts(
    points: np.ndarray, labels: np.ndarray, boxes: np.ndarray
) -> List[Dict[str, np.ndarray]]:
    """The prompts of the module docstring as ``TiledSegmenter.segment_prompts`` dicts.

    Args:
        points (np.ndarray): ``(P, 2)`` pixels.
        labels (np.ndarray): ``(P,)`` 1 foreground / 0 background.
        boxes (np.ndarray): ``(N, 4)`` XYXY pixels.

    Returns:
        list[dict]: One per box (each with all the points), or one of the points alone.
    """
    shared = dict(point_coords=points, point_labels=labels) if len(points) else {}
    if not len(boxes):
        return [shared]
    return [dict(shared, box=box) for box in boxes]


def segment_tiled_file(
    predictor: SAMPredictor,
    image_path: str,
    out_dir: str,
    tiler,
    points: Sequence[str] = (),
    boxes: Sequence[str] = (),
) -> Dict[str, object]:
    """Segment a huge image file tile by tile and write ``<stem>_rle.json``.

    The file holds ``image`` (``file_name``, ``height``, ``width``), ``tiling`` (the
    tiler's settings) and ``annotations``: one record per prompt
    (:meth:`~mmsam.apis.tiled_segmentation.TiledSegmenter.segment_prompts`, COCO RLE
    of the whole image). The image is read tile by tile
    (:func:`~mmsam.apis.region_reader.open_region_reader`); mask files of an earlier
    run without tiling (``<stem>_mask_<i>.png``, ``<stem>_masks.npy``) are removed.

    Args:
        predictor (SAMPredictor): Around the model to use.
        image_path (str): The image file.
        out_dir (str): Output folder (created).
        tiler (TiledSegmenter): The tiling.
        points (Sequence[str]): ``'x,y[:label]'`` strings.
        boxes (Sequence[str]): ``'x1,y1,x2,y2'`` strings.

    Returns:
        dict: ``rle`` (the JSON's path), ``scores`` (list of float), ``reader`` (how
        the image was read).
    """
    from ..apis.region_reader import open_region_reader

    point_array, labels, box_array = parse_prompts(points, boxes)
    reader = open_region_reader(image_path)
    try:
        _check_inside('point', point_array, reader.height, reader.width)
        _check_inside('box corner', box_array.reshape(-1, 2, 2), reader.height, reader.width)
        prompts = prompt_dicts(point_array, labels, box_array)
        records = tiler.segment_prompts(reader, predictor, prompts, progress=True)
        height, width, how = reader.height, reader.width, reader.description
    finally:
        reader.close()
    stem = osp.join(out_dir, osp.splitext(osp.basename(image_path))[0])
    prepare_output_dir(out_dir)
    settings = {
        key: getattr(tiler, key)
        for key in ('tile_size', 'tile_overlap', 'merge_iou', 'nms_iou', 'edge_tolerance')
    }
    atomic_write_json(
        dict(
            image=dict(file_name=image_path, height=height, width=width),
            tiling=settings,
            annotations=records,
        ),
        f'{stem}_rle.json',
    )
    remove_stale_masks(stem, [])
    return dict(rle=f'{stem}_rle.json', scores=[r['predicted_iou'] for r in records], reader=how)


def write_mask_files(stem: str, masks: np.ndarray, save_masks: str) -> List[str]:
    """Write ``<stem>_mask_<i>.png`` and/or ``<stem>_masks.npy`` by ``save_masks``.

    Args:
        stem (str): Output path without the suffixes.
        masks (np.ndarray): ``(M, H, W)`` bool.
        save_masks (str): ``'png'``, ``'npy'``, ``'both'`` or ``'none'``.

    Returns:
        list[str]: The files written.
    """
    written = []
    if save_masks in ('png', 'both'):
        for i, mask in enumerate(masks):
            written.append(save_mask_png(f'{stem}_mask_{i}.png', mask))
    if save_masks in ('npy', 'both'):
        with atomic_write(f'{stem}_masks.npy') as f:
            np.save(f, masks)
        written.append(f'{stem}_masks.npy')
    return written


def remove_stale_masks(stem: str, written: Sequence[str]) -> None:
    """Remove ``<stem>_mask_<i>.png`` / ``<stem>_masks.npy`` files not in ``written``."""
    keep = {osp.abspath(p) for p in written}
    pattern = re.compile(re.escape(osp.basename(stem)) + r'_(mask_\d+\.png|masks\.npy)')
    for path in glob.glob(glob.escape(stem) + '_mask*'):
        if pattern.fullmatch(osp.basename(path)) and osp.abspath(path) not in keep:
            os.remove(path)


def run(args: argparse.Namespace) -> int:
    """``mmsam segment``: check the prompts, the image and the output folder, then segment.

    Returns:
        int: The exit code.

    Raises:
        UsageError: No prompt, or a bad point or box.
    """
    if args.text is not None and getattr(args, 'tile_size', None) is not None:
        raise UsageError('--text does not go with --tile-size (tiling takes point/box prompts)')
    if args.text is not None:
        from .segment_text import run_text

        return run_text(args)
    if not args.points and not args.boxes:
        raise UsageError(
            'give at least one --points X,Y[:LABEL] or --boxes X1,Y1,X2,Y2, or --text "car"'
        )
    try:
        for p in args.points:
            parse_point(p)
        for b in args.boxes:
            parse_box(b)
    except ValueError as err:
        raise UsageError(str(err)) from err
    tiling = tile_options(args)
    if tiling is not None:
        return _run_tiled(args, tiling)
    load_image(args.image)  # an unreadable image is reported before the model loads
    prepare_output_dir(args.out_dir)
    out = segment_image_file(
        _load_predictor(args),
        args.image,
        args.out_dir,
        points=args.points,
        boxes=args.boxes,
        multimask=args.multimask,
        save_masks=args.save_masks,
    )
    _print_scores(out['scores'])
    print(f'overlay: {out["overlay"]}')
    for path in out['masks']:
        print(f'masks: {path}')
    return 0


def _load_predictor(args: argparse.Namespace) -> SAMPredictor:
    """The predictor of ``--model`` / ``--weights`` on ``--device``."""
    return SAMPredictor(load_sam(args, check_device(args.device)))


def _print_scores(scores: Sequence[float]) -> None:
    """``N mask(s), predicted IoU s1, s2, ...``."""
    shown = ', '.join(f'{s:.3f}' for s in scores)
    print(f'{len(scores)} mask(s), predicted IoU {shown}')


def _run_tiled(args: argparse.Namespace, tiling: dict) -> int:
    """``mmsam segment --tile-size``: :func:`segment_tiled_file`."""
    from ..apis.region_reader import open_region_reader
    from ..apis.tiled_segmentation import TiledSegmenter

    if args.multimask:
        raise UsageError('--multimask does not go with --tile-size: one mask per prompt')
    try:
        tiler = TiledSegmenter(**tiling)
    except ValueError as err:
        raise UsageError(str(err)) from err
    open_region_reader(args.image).close()  # an unreadable image before the model loads
    prepare_output_dir(args.out_dir)
    out = segment_tiled_file(
        _load_predictor(args), args.image, args.out_dir, tiler, points=args.points, boxes=args.boxes
    )
    print(f'{args.image}: {out["reader"]}')
    _print_scores(out['scores'])
    print(f'masks (COCO RLE): {out["rle"]}')
    return 0


__all__ = [
    'parse_prompts',
    'prompt_dicts',
    'segment_tiled_file',
    'parse_point',
    'parse_box',
    'predict_prompts',
    'remove_stale_masks',
    'segment_image_file',
    'write_mask_files',
    'run',
]
