"""Turn a folder of images into a COCO instance-segmentation dataset: mmdet boxes -> SAM masks.

Like Ultralytics' ``auto_annotate`` but with any mmdet detector: the detector finds
boxes, SAM segments every box (all boxes of an image decoded together on one image
embedding), and one COCO JSON is written that ``mmdet.datasets.CocoDataset`` loads for
training (categories are the detector's ``dataset_meta['classes']``).

Resumable: each image's result is kept in ``<output_dir>/.cache/<settings hash>/`` and
reused by a later run with the same settings; the COCO file is rebuilt from them at the
end. The hash is of *contents*, not paths: the detector's resolved config text and
weights, SAM's config and weights, and every option; a cached result also records the
image file's size and time stamp, so an edited image is redone. Files under the output
folder are never read as input. Images that cannot be read or processed are reported
and left out.
"""

import json
import os
import os.path as osp
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ..structures.polygons import (
    DEFAULT_POLYGON_MIN_IOU,
    mask_to_coco_polygons,
    segmentation_area_bbox,
)
from ..structures.rle import coco_rle_area, masks_to_coco_rle
from ..utils.atomic_file import atomic_write_json, prepare_output_dir
from .batch_runner import (
    BatchReport,
    file_stamp,
    list_job_images,
    model_fingerprint,
    run_over_images,
    settings_key,
)
from .image_io import load_image
from .predictor import SAMPredictor

DEFAULT_SAM = 'sam_vit-base-p16_3rdparty_sa1b-1024px'


@dataclass
class AnnotateResult(BatchReport):
    """A :class:`BatchReport` plus where the COCO file is and how much it holds."""

    ann_file: str = ''
    num_images: int = 0
    num_annotations: int = 0


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
    if det_model.endswith('.py'):
        if not osp.isfile(det_model):
            raise FileNotFoundError(f'detector config not found: {det_model}')
        from mmdet.apis import init_detector

        with warnings.catch_warnings(), detector_scope():
            warnings.simplefilter('ignore', UserWarning)
            model = init_detector(det_model, det_weights, device=device, cfg_options=cfg_options)
        return model.eval()
    from mmdet.apis import DetInferencer

    known = {name.lower() for name in DetInferencer.list_models('mmdet')}
    if det_model.lower() not in known:
        raise ValueError(
            f'detector {det_model!r} is not a config file (.py) and not an mmdet model name '
            "(DetInferencer.list_models('mmdet') lists them)"
        )
    try:
        with detector_scope():
            inferencer = DetInferencer(
                model=det_model, weights=det_weights, device=device, show_progress=False
            )
    except OSError as err:  # URLError, connection errors: the download of the weights
        if det_weights is not None:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ''
        raise OSError(
            f'the weights of mmdet model {det_model!r} could not be downloaded '
            f'({type(err).__name__}: {first}); download them by other means and pass the '
            'file with --det-weights (det_weights=)'
        ) from err
    if cfg_options:
        warnings.warn('cfg_options are ignored for a detector given by model name')
    return inferencer.model.eval()


class _Annotator:
    """Detect, segment and cache the records of one image at a time."""

    def __init__(
        self,
        detector,
        predictor,
        root,
        cache_dir,
        conf,
        classes,
        max_det,
        mask_format,
        batch,
        polygon=None,
    ):
        self.detector = detector
        self.predictor = predictor
        self.root = root
        self.cache_dir = cache_dir
        self.conf = conf
        self.classes = None if classes is None else {int(c) for c in classes}
        self.max_det = max_det
        self.mask_format = mask_format
        self.batch = batch
        self.polygon = polygon or {}  # mask_to_coco_polygons' min_iou and tolerance

    def relpath(self, path: str) -> str:
        return osp.relpath(path, self.root).replace(os.sep, '/')

    def cache_path(self, path: str) -> str:
        return osp.join(self.cache_dir, self.relpath(path) + '.json')

    def is_done(self, path: str) -> bool:
        try:
            with open(self.cache_path(path), encoding='utf-8') as f:
                return json.load(f).get('source') == file_stamp(path)
        except (OSError, ValueError, AttributeError):
            return False

    def _detect(self, rgb: np.ndarray):
        from mmdet.apis import inference_detector

        with torch.no_grad(), detector_scope():
            result = inference_detector(self.detector, np.ascontiguousarray(rgb[..., ::-1]))
        pred = result.pred_instances
        boxes = pred.bboxes.detach().cpu().numpy().astype(np.float64).reshape(-1, 4)
        scores = pred.scores.detach().cpu().numpy().astype(np.float64).reshape(-1)
        labels = pred.labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
        keep = scores >= self.conf
        if self.classes is not None:
            keep &= np.isin(labels, sorted(self.classes))
        order = np.argsort(-scores[keep], kind='stable')[: self.max_det]
        return boxes[keep][order], scores[keep][order], labels[keep][order]

    def _segment(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        boxes = boxes.copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        self.predictor.set_image(rgb)
        parts = []
        for start in range(0, len(boxes), self.batch):
            masks, _, _ = self.predictor.predict(
                box=boxes[start : start + self.batch], multimask_output=False
            )
            parts.append(masks[:, 0])
        return np.concatenate(parts) if parts else np.zeros((0, height, width), bool)

    def __call__(self, path: str) -> None:
        rgb = load_image(path)
        boxes, scores, labels = self._detect(rgb)
        masks = self._segment(rgb, boxes) if len(boxes) else np.zeros((0, *rgb.shape[:2]), bool)
        rles = masks_to_coco_rle(masks)
        areas = coco_rle_area(rles) if rles else np.zeros(0)
        anns = []
        for i, rle in enumerate(rles):
            if areas[i] <= 0:
                continue  # SAM found nothing inside this box
            seg = rle
            if self.mask_format == 'polygon':  # exact pixel-edge polygons, or RLE (logged)
                name = f'{self.relpath(path)} detection {i}'
                seg = mask_to_coco_polygons(masks[i], name=name, **self.polygon)
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
        record = dict(
            file_name=self.relpath(path),
            height=rgb.shape[0],
            width=rgb.shape[1],
            anns=anns,
            source=file_stamp(path),
        )
        atomic_write_json(record, self.cache_path(path))


def _coco_from_records(records: List[dict], class_names: Sequence[str]) -> Dict[str, Any]:
    images, annotations = [], []
    for image_id, rec in enumerate(records, start=1):
        images.append(
            dict(id=image_id, file_name=rec['file_name'], height=rec['height'], width=rec['width'])
        )
        for ann in rec['anns']:
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=ann['label'] + 1,
                    segmentation=ann['segmentation'],
                    bbox=ann['bbox'],
                    area=ann['area'],
                    iscrowd=0,
                    score=ann['score'],
                )
            )
    categories = [dict(id=i + 1, name=str(name)) for i, name in enumerate(class_names)]
    return dict(
        info=dict(description='mmsam auto_annotate: mmdet detector boxes segmented by SAM'),
        images=images,
        annotations=annotations,
        categories=categories,
    )


def auto_annotate(
    data: str,
    det_model: Union[str, torch.nn.Module],
    sam_model: Union[str, torch.nn.Module, SAMPredictor] = DEFAULT_SAM,
    device: Union[str, torch.device] = '',
    output_dir: Optional[str] = None,
    conf: float = 0.25,
    max_det: int = 300,
    classes: Optional[Sequence[int]] = None,
    det_weights: Optional[str] = None,
    sam_weights: Union[bool, str] = True,
    det_cfg_options: Optional[dict] = None,
    mask_format: str = 'rle',
    polygon_min_iou: float = DEFAULT_POLYGON_MIN_IOU,
    polygon_tolerance: float = 0.0,
    ann_file: str = 'annotations.json',
    sam_batch: int = 64,
    progress: bool = True,
) -> AnnotateResult:
    """Detect objects with an mmdet detector, segment them with SAM, write a COCO file.

    Args:
        data (str): An image folder (searched recursively) or one image file.
        det_model (str | nn.Module): Detector: config path, mmdet model name, or model
            (see :func:`build_detector`).
        sam_model (str | nn.Module | SAMPredictor): SAM: an mmsam model name or config
            (built with :func:`mmsam.apis.get_model`), a SAM model, or a predictor.
        device (str): ``''`` picks CUDA when available, else CPU.
        output_dir (str, optional): Where to write; ``<data>_auto_annotate`` next to
            ``data`` by default.
        conf (float): Keep detections with at least this score.
        max_det (int): At most this many detections per image (highest scores).
        classes (Sequence[int], optional): Keep only these detector class indices.
        det_weights (str, optional): Detector checkpoint (path or URL).
        sam_weights (bool | str): ``True`` for the model's published weights, or a path.
        det_cfg_options (dict, optional): Detector config overrides.
        mask_format (str): ``'rle'`` (COCO compressed RLE) or ``'polygon'`` (the
            pixel-edge boundary of every part with holes bridged in, which pycocotools
            decodes back to exactly the mask; see :mod:`mmsam.structures.polygons`).
        polygon_min_iou (float): With ``'polygon'``, a mask whose polygons decode to a
            lower IoU with it is written as RLE instead, with a warning in the log.
            Exact polygons (``polygon_tolerance=0``) always reach IoU 1.
        polygon_tolerance (float): Douglas-Peucker simplification of the polygons, in
            pixels; ``0`` keeps them exact (more vertices), ``1`` keeps IoU >= 0.98 for
            masks 60+ px across.
        ann_file (str): Name of the COCO file in ``output_dir``.
        sam_batch (int): Boxes decoded together (bounds memory on big images).
        progress (bool): Show a progress bar.

    Returns:
        AnnotateResult: ``ann_file`` (its path), counts, and the failed images with
        their reasons. The COCO file has ``images`` (``file_name`` relative to
        ``data``), ``annotations`` (``segmentation``, ``bbox`` XYWH of the mask,
        ``area``, ``score`` of the detection, ``category_id``, ``iscrowd`` 0) and
        ``categories`` (ids ``1..K`` for the detector's classes).
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
    data = os.fspath(data)
    if output_dir is None:
        output_dir = osp.abspath(data).rstrip(os.sep) + '_auto_annotate'
    images = list_job_images(data, output_dir)
    prepare_output_dir(output_dir)  # before any work
    root = data if osp.isdir(data) else osp.dirname(osp.abspath(data))
    device = resolve_device(device)
    if isinstance(sam_model, SAMPredictor):
        predictor = sam_model
    elif isinstance(sam_model, torch.nn.Module):
        predictor = SAMPredictor(sam_model.to(device))
    else:
        from .model_zoo import get_model

        predictor = SAMPredictor(get_model(sam_model, pretrained=sam_weights, device=device))
    detector = build_detector(det_model, det_weights, device, det_cfg_options)
    class_names = list(detector.dataset_meta.get('classes') or [])
    sam_config = getattr(predictor.model, '_config', None)
    key = settings_key(
        det_config=detector.cfg.to_dict(),  # resolved: _base_ files and options merged
        det_weights=model_fingerprint(detector),
        class_names=class_names,
        sam_config=None if sam_config is None else sam_config.to_dict(),
        sam_weights=model_fingerprint(predictor.model),
        conf=float(conf),
        max_det=int(max_det),
        classes=None if classes is None else sorted(int(c) for c in classes),
        mask_format=mask_format,
        polygon_min_iou=None if mask_format == 'rle' else float(polygon_min_iou),
        polygon_tolerance=None if mask_format == 'rle' else float(polygon_tolerance),
        sam_batch=int(sam_batch),
    )
    annotator = _Annotator(
        detector,
        predictor,
        root,
        osp.join(output_dir, '.cache', key),
        float(conf),
        classes,
        int(max_det),
        mask_format,
        max(int(sam_batch), 1),
        dict(min_iou=float(polygon_min_iou), tolerance=float(polygon_tolerance)),
    )
    report = run_over_images(images, annotator, annotator.is_done, 'annotate', progress)
    failed = {path for path, _ in report.failed}
    records = []
    for path in images:
        if path in failed:
            continue
        with open(annotator.cache_path(path), encoding='utf-8') as f:
            records.append(json.load(f))
    num_classes = max([len(class_names)] + [a['label'] + 1 for r in records for a in r['anns']])
    names = class_names + [f'class_{i}' for i in range(len(class_names), num_classes)]
    coco = _coco_from_records(records, names)
    out_file = osp.join(output_dir, ann_file)
    atomic_write_json(coco, out_file)
    return AnnotateResult(
        done=report.done,
        skipped=report.skipped,
        failed=report.failed,
        ann_file=out_file,
        num_images=len(coco['images']),
        num_annotations=len(coco['annotations']),
    )
