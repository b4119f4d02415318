"""``mmsam annotate``: a folder of images to a COCO instance-segmentation dataset.

The folder half of auto-annotation: :func:`mmsam.apis.annotate_image` (an mmdet
detector's boxes segmented by SAM) on every image, then one COCO JSON that
``mmdet.datasets.CocoDataset`` loads for training (categories are the detector's
``dataset_meta['classes']``).

Resumable: each image's result is kept in ``<output_dir>/.cache/<settings hash>/`` and
reused by a later run with the same settings; the COCO file is rebuilt from them at the
end. The hash is of *contents*, not paths: the detector's resolved config text and
weights, SAM's config and weights, and every option; a cached result also records the
image file's size and time stamp, so an edited image is redone. Files under the output
folder are never read as input. Images that cannot be read or processed are reported
and left out.
"""

import argparse
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from ..apis.auto_annotate import (
    annotate_image,
    build_detector,
    check_annotate_options,
    resolve_device,
)
from ..apis.image_io import load_image
from ..apis.model_index import DEFAULT_MODEL
from ..apis.predictor import SAMPredictor
from ..apis.text_defaults import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD
from ..structures.polygons import DEFAULT_POLYGON_MIN_IOU
from ..utils.atomic_file import atomic_write_json, prepare_output_dir
from ..utils.fingerprints import file_stamp, settings_key
from .common import UsageError, check_device, dict_options, print_report
from .distributed import close_launcher, init_launcher, run_on_main_after_all, shard
from .folder_jobs import BatchReport, list_job_images, model_fingerprint, run_over_images


@dataclass
class AnnotateResult(BatchReport):
    """A :class:`BatchReport` plus where the COCO file is and how much it holds."""

    ann_file: str = ''
    num_images: int = 0
    num_annotations: int = 0


class _Annotator:
    """Annotate one image at a time and cache its record."""

    def __init__(self, detector, predictor, root, cache_dir, options, annotate=annotate_image):
        self.annotate = annotate  # annotate_image, or annotate_image_by_text (texts)
        self.detector = detector
        self.predictor = predictor
        self.root = root
        self.cache_dir = cache_dir
        self.options = options  # annotate_image's keyword arguments

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

    def __call__(self, path: str) -> None:
        rgb = load_image(path)
        anns = self.annotate(
            rgb, self.detector, self.predictor, name=self.relpath(path), **self.options
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
    det_model: Union[str, torch.nn.Module, None] = None,
    sam_model: Union[str, torch.nn.Module, SAMPredictor] = DEFAULT_MODEL,
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
    rank: int = 0,
    world_size: int = 1,
    texts: Union[str, Sequence[str], None] = None,
    box_threshold: float = DEFAULT_BOX_THRESHOLD,
    text_threshold: float = DEFAULT_TEXT_THRESHOLD,
    text_encoder: Optional[str] = None,
) -> AnnotateResult:
    """Detect objects with an mmdet detector, segment them with SAM, write a COCO file.

    Args:
        data (str): An image folder (searched recursively) or one image file.
        det_model (str | nn.Module, optional): Detector: config path, mmdet model name,
            or model (see :func:`mmsam.apis.auto_annotate.build_detector`); with
            ``texts`` a Grounding DINO (default
            :data:`~mmsam.apis.text_defaults.DEFAULT_DET_MODEL`).
        sam_model (str | nn.Module | SAMPredictor): SAM: an mmsam model name or config
            (built with :func:`mmsam.apis.get_model`), a SAM model, or a predictor.
        device (str): ``''`` picks CUDA when available, else CPU.
        output_dir (str, optional): Where to write; ``<data>_auto_annotate`` next to
            ``data`` by default.
        conf (float): Keep detections with at least this score (not with ``texts``:
            ``box_threshold`` and ``text_threshold`` decide).
        max_det (int): At most this many detections per image (highest scores).
        classes (Sequence[int], optional): Keep only these detector class indices.
        det_weights (str, optional): Detector checkpoint (path or URL).
        sam_weights (bool | str): ``True`` for the model's published weights, or a path.
        det_cfg_options (dict, optional): Detector config overrides.
        mask_format, polygon_min_iou, polygon_tolerance: See
            :func:`mmsam.apis.annotate_image`.
        ann_file (str): Name of the COCO file in ``output_dir``.
        sam_batch (int): Boxes decoded together (bounds memory on big images).
        progress (bool): Show a progress bar.
        rank (int): This process's rank: it annotates its share of the images
            (:func:`~mmsam.cli.distributed.shard`); rank 0 writes the COCO file once
            every rank is done.
        world_size (int): The number of processes.
        texts (str | Sequence[str], optional): Segment what these phrases name
            (``'car . person'``): Grounding DINO finds the boxes, and the phrases
            (normalised, each once, in order) are the categories, ids ``1..K``. See
            :mod:`mmsam.apis.text_prompts`.
        box_threshold, text_threshold (float): With ``texts``, see
            :func:`mmsam.apis.text_prompts.detect_by_text`.
        text_encoder (str, optional): With ``texts``, a local BERT folder replacing
            the config's ``lang_model_name`` (see
            :func:`mmsam.apis.text_prompts.build_grounding_detector`).

    Returns:
        AnnotateResult: ``ann_file`` (its path; ``''`` on ranks but 0), counts, and
        the failed images with their reasons. The COCO file has ``images``
        (``file_name`` relative to ``data``), ``annotations`` (``segmentation``,
        ``bbox`` XYWH of the mask, ``area``, ``score`` of the detection,
        ``category_id``, ``iscrowd`` 0) and ``categories`` (ids ``1..K`` for the
        detector's classes or the phrases).
    """
    check_annotate_options(conf, mask_format, polygon_min_iou, polygon_tolerance)
    if texts is not None:
        from ..apis.text_prompts import check_thresholds, parse_text_prompt

        phrases = parse_text_prompt(texts)
        check_thresholds(box_threshold, text_threshold)
        if classes is not None:
            raise ValueError('classes cannot be combined with texts: name only those phrases')
    elif det_model is None:
        raise ValueError('give det_model (a detector) or texts (Grounding DINO finds them)')
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
        from ..apis.model_zoo import get_model

        predictor = SAMPredictor(get_model(sam_model, pretrained=sam_weights, device=device))
    annotate, text_settings = annotate_image, {}
    if texts is None:
        detector = build_detector(det_model, det_weights, device, det_cfg_options)
        class_names = list(detector.dataset_meta.get('classes') or [])
    else:
        from ..apis.text_prompts import (
            DEFAULT_DET_MODEL,
            annotate_image_by_text,
            build_grounding_detector,
        )

        detector = build_grounding_detector(
            det_model or DEFAULT_DET_MODEL, det_weights, device, text_encoder, det_cfg_options
        )
        class_names, annotate = phrases, annotate_image_by_text
        text_settings = dict(
            box_threshold=float(box_threshold), text_threshold=float(text_threshold)
        )
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
        **text_settings,  # with texts only: the keys of earlier runs stay valid
    )
    options = dict(
        conf=float(conf),
        max_det=int(max_det),
        classes=classes,
        mask_format=mask_format,
        polygon_min_iou=float(polygon_min_iou),
        polygon_tolerance=float(polygon_tolerance),
        sam_batch=int(sam_batch),
    )
    if texts is not None:
        del options['conf'], options['classes']
        options.update(phrases=phrases, **text_settings)
    cache_dir = osp.join(output_dir, '.cache', key)
    annotator = _Annotator(detector, predictor, root, cache_dir, options, annotate)
    mine = shard(images, rank, world_size)
    report = run_over_images(mine, annotator, annotator.is_done, 'annotate', progress and rank == 0)
    result = AnnotateResult(done=report.done, skipped=report.skipped, failed=report.failed)

    def merge() -> None:
        # every image finished by any rank, in the listing's order; the failed ones
        # have no finished record and are left out
        records = []
        for path in images:
            if annotator.is_done(path):
                with open(annotator.cache_path(path), encoding='utf-8') as f:
                    records.append(json.load(f))
        labels = [a['label'] + 1 for r in records for a in r['anns']]
        num_classes = max([len(class_names)] + labels)
        names = class_names + [f'class_{i}' for i in range(len(class_names), num_classes)]
        coco = _coco_from_records(records, names)
        result.ann_file = osp.join(output_dir, ann_file)
        atomic_write_json(coco, result.ann_file)
        result.num_images = len(coco['images'])
        result.num_annotations = len(coco['annotations'])

    run_on_main_after_all(world_size, rank, merge)
    return result


def run(args: argparse.Namespace) -> int:
    """``mmsam annotate``: :func:`auto_annotate` with the command line's options.

    Returns:
        int: The exit code (1 when an image failed).
    """
    if args.text is None and args.det_model is None:
        raise UsageError('give --det-model (an mmdet detector) or --text "car . person"')
    if args.text is not None:
        from ..apis.text_prompts import parse_text_prompt

        if args.classes is not None:
            raise UsageError('--classes cannot be combined with --text: name only those phrases')
        try:
            parse_text_prompt(args.text)
        except ValueError as err:
            raise UsageError(f'bad --text: {err}') from err
    options = dict_options(args.det_cfg_options, '--det-cfg-options')
    device = check_device(args.device)
    rank, world_size = init_launcher(args.launcher, args.local_rank)
    result = auto_annotate(
        args.data,
        args.det_model,
        sam_model=args.model,
        device=device,
        output_dir=args.out_dir,
        conf=args.conf,
        max_det=args.max_det,
        classes=args.classes,
        det_weights=args.det_weights,
        sam_weights=args.weights if args.weights else True,
        det_cfg_options=options,
        mask_format=args.mask_format,
        rank=rank,
        world_size=world_size,
        texts=args.text,
        box_threshold=args.box_threshold,
        text_threshold=args.text_threshold,
        text_encoder=args.text_encoder,
        **{
            key: value
            for key, value in (
                ('polygon_min_iou', args.polygon_min_iou),
                ('polygon_tolerance', args.polygon_tolerance),
            )
            if value is not None
        },
    )
    close_launcher(world_size)
    if result.ann_file:  # rank 0
        print(
            f'{result.ann_file}: {result.num_images} images, {result.num_annotations} annotations'
        )
    return print_report(result)
