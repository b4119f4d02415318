"""Auto-annotation of one image: an mmdet detector's boxes segmented by SAM.

Like Ultralytics' ``auto_annotate`` but with any mmdet detector: the detector finds
boxes, SAM segments every box (all boxes of an image decoded together on one image
embedding), and each detection becomes a COCO annotation (RLE or polygons).
:func:`mmsam.cli.annotate.auto_annotate` (``mmsam annotate``) runs this over a folder,
resumably, and writes one COCO file that ``mmdet.datasets.CocoDataset`` loads.
"""

import os
import os.path as osp
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..structures.polygons import (
    DEFAULT_POLYGON_MIN_IOU,
    mask_to_coco_polygons,
    segmentation_area_bbox,
)
from ..structures.rle import coco_rle_area, masks_to_coco_rle
from .predictor import SAMPredictor


def resolve_device(device: Optional[Union[str, torch.device]]) -> str:
    """``''``/``None`` -> ``'cuda'`` when available, else ``'cpu'``; otherwise unchanged."""
    if device is None or str(device) == '':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return str(device)


def detector_scope():
    """Run mmdet code under mmdet's default scope without leaving it set globally.

    ``init_detector`` and ``DetInferencer`` set mmengine's global default scope, which
    then changes how later configs are built; inside this context that change is undone
    on exit.
    """
    from mmengine.registry import DefaultScope

    return DefaultScope.overwrite_default_scope('mmdet')


def build_detector(
    det_model: Union[str, torch.nn.Module],
    det_weights: Optional[str] = None,
    device: str = 'cpu',
    cfg_options: Optional[dict] = None,
) -> torch.nn.Module:
    """An mmdet detector from a config file, an mmdet model name, or a built model.

    Args:
        det_model (str | nn.Module): A config ``.py`` path (``mmdet.apis.init_detector``),
            a model name from mmdet's metafiles (``DetInferencer``'s names, e.g.
            ``'rtmdet_tiny_8xb32-300e_coco'``; its weights are downloaded unless
            ``det_weights`` is given), or a detector built by ``init_detector``.
        det_weights (str, optional): Checkpoint path or URL. Without it a config gives
            random weights (mmdet warns) and COCO class names.
        device (str): Device.
        cfg_options (dict, optional): Config overrides (``merge_from_dict`` keys).

    Returns:
        nn.Module: The detector in eval mode, with ``cfg`` and ``dataset_meta``.
    """
    if isinstance(det_model, torch.nn.Module):
        for attr in ('cfg', 'dataset_meta'):
            if getattr(det_model, attr, None) is None:
                raise ValueError(
                    f'det_model must be built by mmdet.apis.init_detector (it needs .{attr})'
                )
        return det_model.eval()
    if not isinstance(det_model, (str, os.PathLike)):
        raise TypeError(
            f'det_model must be a config path, an mmdet model name or a detector, '
            f'got {type(det_model).__name__}'
        )
    det_model = os.fspath(det_model)
    weights, downloaded = det_weights, False
    if det_model.endswith('.py'):
        if not osp.isfile(det_model):
            raise FileNotFoundError(f'detector config not found: {det_model}')
        config = det_model
    else:
        config, url = resolve_mmdet_name(det_model)
        weights, downloaded = det_weights or url, det_weights is None
    from mmdet.apis import init_detector

    try:
        with warnings.catch_warnings(), detector_scope():
            warnings.simplefilter('ignore', UserWarning)
            model = init_detector(config, weights, device=device, cfg_options=cfg_options)
    except OSError as err:  # URLError, connection errors: the download of the weights
        if not downloaded:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ''
        raise OSError(
            f'the weights of mmdet model {det_model!r} could not be downloaded '
            f'({type(err).__name__}: {first}); download them by other means and pass the '
            'file with --det-weights (det_weights=)'
        ) from err
    return model.eval()


def resolve_mmdet_name(name: str) -> Tuple[str, Optional[str]]:
    """An mmdet model name (or alias) -> its config path in mmdet's package and its
    weights URL, from mmdet's metafiles (the names ``DetInferencer`` knows)."""
    from mmengine.infer import BaseInferencer

    root = BaseInferencer._get_repo_or_mim_dir('mmdet')
    for model in BaseInferencer._get_models_from_metafile(root):
        if name.lower() in [model['Name'].lower()] + [a.lower() for a in model.get('Alias', [])]:
            weights = model.get('Weights')
            weights = weights[0] if isinstance(weights, list) else weights
            return osp.join(root, model['Config']), weights
    raise ValueError(
        f'detector {name!r} is not a config file (.py) and not an mmdet model name '
        "(DetInferencer.list_models('mmdet') lists them)"
    )


def check_annotate_options(
    conf: float,
    mask_format: str = 'rle',
    polygon_min_iou: float = DEFAULT_POLYGON_MIN_IOU,
    polygon_tolerance: float = 0.0,
    **unchecked,
) -> None:
    """Check the options of :func:`annotate_image` before any work (``sam_batch``
    and ``name`` are among the ``unchecked``).

    Raises:
        ValueError: A value out of its range, named.
    """
    if mask_format not in ('rle', 'polygon'):
        raise ValueError(f"mask_format must be 'rle' or 'polygon', got {mask_format!r}")
    if not 0.0 <= float(polygon_min_iou) <= 1.0 or float(polygon_tolerance) < 0:
        raise ValueError(
            f'polygon_min_iou must be in [0, 1] and polygon_tolerance >= 0, got '
            f'{polygon_min_iou} and {polygon_tolerance}'
        )
    if not 0.0 <= float(conf) <= 1.0:
        raise ValueError(f'conf must be in [0, 1], got {conf}')


def detect_boxes(
    detector: torch.nn.Module,
    rgb: np.ndarray,
    conf: float = 0.25,
    max_det: int = 300,
    classes: Optional[Sequence[int]] = None,
):
    """The detector's boxes on an image, filtered and sorted by score.

    Args:
        detector (nn.Module): Built by :func:`build_detector`.
        rgb (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        conf (float): Keep detections with at least this score.
        max_det (int): At most this many (highest scores first).
        classes (Sequence[int], optional): Keep only these class indices.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: boxes ``(N, 4)`` XYXY float64
        pixels, scores ``(N,)`` and labels ``(N,)`` int64, best score first.
    """
    from mmdet.apis import inference_detector

    with torch.no_grad(), detector_scope():
        result = inference_detector(detector, np.ascontiguousarray(rgb[..., ::-1]))
    pred = result.pred_instances
    boxes = pred.bboxes.detach().cpu().numpy().astype(np.float64).reshape(-1, 4)
    scores = pred.scores.detach().cpu().numpy().astype(np.float64).reshape(-1)
    labels = pred.labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
    keep = scores >= conf
    if classes is not None:
        keep &= np.isin(labels, sorted({int(c) for c in classes}))
    order = np.argsort(-scores[keep], kind='stable')[:max_det]
    return boxes[keep][order], scores[keep][order], labels[keep][order]


def segment_boxes(
    predictor: SAMPredictor, rgb: np.ndarray, boxes: np.ndarray, sam_batch: int = 64
) -> np.ndarray:
    """SAM's mask of each box (clipped to the image), ``sam_batch`` boxes decoded together.

    Args:
        predictor (SAMPredictor): The predictor; its image is set to ``rgb``.
        rgb (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        boxes (np.ndarray): ``(N, 4)`` XYXY pixels.
        sam_batch (int): Boxes decoded together (bounds memory on big images).

    Returns:
        np.ndarray: ``(N, H, W)`` bool.
    """
    height, width = rgb.shape[:2]
    if not len(boxes):
        return np.zeros((0, height, width), bool)
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    predictor.set_image(rgb)
    batch = max(int(sam_batch), 1)
    parts = []
    for start in range(0, len(boxes), batch):
        masks, _, _ = predictor.predict(box=boxes[start : start + batch], multimask_output=False)
        parts.append(masks[:, 0])
    return np.concatenate(parts)


def annotate_image(
    rgb: np.ndarray,
    detector: torch.nn.Module,
    predictor: SAMPredictor,
    conf: float = 0.25,
    max_det: int = 300,
    classes: Optional[Sequence[int]] = None,
    **mask_options,
) -> List[dict]:
    """Detect objects in one image and segment each with SAM.

    Args:
        rgb (np.ndarray): ``(H, W, 3)`` uint8 RGB (:func:`mmsam.apis.load_image`).
        detector (nn.Module): Built by :func:`build_detector`.
        predictor (SAMPredictor): Around the SAM model.
        conf, max_det, classes: See :func:`detect_boxes`.
        **mask_options: ``mask_format``, ``polygon_min_iou``, ``polygon_tolerance``,
            ``sam_batch`` and ``name`` of :func:`annotate_detections`; checked before
            the detector runs.

    Returns:
        list[dict]: As :func:`annotate_detections`.
    """
    check_annotate_options(conf, **mask_options)
    boxes, scores, labels = detect_boxes(detector, rgb, conf, max_det, classes)
    return annotate_detections(rgb, predictor, boxes, scores, labels, **mask_options)


def annotate_detections(
    rgb: np.ndarray,
    predictor: SAMPredictor,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    mask_format: str = 'rle',
    polygon_min_iou: float = DEFAULT_POLYGON_MIN_IOU,
    polygon_tolerance: float = 0.0,
    sam_batch: int = 64,
    name: str = 'image',
) -> List[dict]:
    """Segment given detections with SAM and make them COCO annotations.

    Args:
        rgb (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        predictor (SAMPredictor): Around the SAM model.
        boxes (np.ndarray): ``(N, 4)`` XYXY pixels, best score first.
        scores (np.ndarray): ``(N,)`` detection scores.
        labels (np.ndarray): ``(N,)`` class indices.
        mask_format (str): ``'rle'`` (COCO compressed RLE) or ``'polygon'`` (the
            pixel-edge boundary of every part with holes bridged in, which pycocotools
            decodes back to exactly the mask; see :mod:`mmsam.structures.polygons`).
        polygon_min_iou (float): With ``'polygon'``, a mask whose polygons decode to a
            lower IoU with it is written as RLE instead, with a warning in the log.
            Exact polygons (``polygon_tolerance=0``) always reach IoU 1.
        polygon_tolerance (float): Douglas-Peucker simplification of the polygons, in
            pixels; ``0`` keeps them exact (more vertices), ``1`` keeps IoU >= 0.98 for
            masks 60+ px across.
        sam_batch (int): Boxes decoded together (bounds memory on big images).
        name (str): Names the image in log messages.

    Returns:
        list[dict]: One per detection whose mask is not empty, best score first:
        ``label`` (detector class index), ``bbox`` (XYWH of what ``segmentation``
        decodes to), ``area``, ``score`` (the detection's), ``det_bbox`` (the
        detector's XYXY box) and ``segmentation`` (COCO RLE or polygons).
    """
    masks = segment_boxes(predictor, rgb, boxes, sam_batch)
    rles = masks_to_coco_rle(masks)
    areas = coco_rle_area(rles) if rles else np.zeros(0)
    anns = []
    for i, rle in enumerate(rles):
        if areas[i] <= 0:
            continue  # SAM found nothing inside this box
        seg = rle
        if mask_format == 'polygon':  # exact pixel-edge polygons, or RLE (logged)
            seg = mask_to_coco_polygons(
                masks[i],
                min_iou=float(polygon_min_iou),
                tolerance=float(polygon_tolerance),
                name=f'{name} detection {i}',
            )
        area, bbox = segmentation_area_bbox(seg, *rgb.shape[:2])  # of what is written
        anns.append(
            dict(
                label=int(labels[i]),
                bbox=bbox,
                area=area,
                score=float(scores[i]),
                det_bbox=[float(v) for v in boxes[i]],
                segmentation=seg,
            )
        )
    return anns


__all__ = [
    'annotate_detections',
    'annotate_image',
    'build_detector',
    'check_annotate_options',
    'detect_boxes',
    'detector_scope',
    'resolve_device',
    'segment_boxes',
]
