"""Count what an mmdet COCO-style dataset drops or ignores, say so in the log, and refuse a
dataset that leaves nothing to prompt."""

import os.path as osp
from collections import Counter
from typing import Iterable, List


class AnnotationFileError(ValueError):
    """An annotation file that cannot be evaluated as configured; the message names the file
    and the reason. Raised while the dataset loads (``full_init``), before any image is read."""


class NoInstancesError(AnnotationFileError):
    """A dataset that would prompt no instance at all (every annotation dropped or ignored, no
    detection used); the message gives the audit's counts by reason."""


#: reasons, in the order mmdet's ``CocoDataset.parse_data_info`` applies them
DROP_REASONS = {
    'unknown_image': 'annotations of images missing from "images" (never loaded)',
    'missing_file': 'images whose file does not exist (skipped with their annotations)',
    'ignore': 'annotations with "ignore" set (dropped)',
    'outside': 'annotations whose box does not overlap the image (dropped)',
    'degenerate': 'annotations with area <= 0 or box width/height < 1 (dropped)',
    'category': (
        "annotations of categories outside the dataset's classes (not in the file's "
        '"categories", or left out by metainfo classes) (dropped)'
    ),
    'crowd': 'crowd annotations (kept as ignored: no prompt, no mIoU; COCOeval ignores them)',
    'no_segmentation': 'annotations without a segmentation (kept as ignored)',
    'bad_polygon': 'annotations whose polygons all have < 3 points (kept as ignored)',
    'bad_rle': 'annotations with a malformed RLE (kept as ignored)',
}


def classify_annotation(ann: dict, img_w: int, img_h: int, cat_ids: Iterable[int]) -> str:
    """Why mmdet would drop or ignore one annotation, or ``''`` if it is a valid instance.

    Args:
        ann (dict): A COCO annotation.
        img_w (int): Image width.
        img_h (int): Image height.
        cat_ids (Iterable[int]): Categories of the dataset's classes.

    Returns:
        str: A key of :data:`DROP_REASONS`, or ``''``.
    """
    if ann.get('ignore', False):
        return 'ignore'
    x1, y1, w, h = ann['bbox']
    inter_w = max(0, min(x1 + w, img_w) - max(x1, 0))
    inter_h = max(0, min(y1 + h, img_h) - max(y1, 0))
    if inter_w * inter_h == 0:
        return 'outside'
    if ann.get('area', 0) <= 0 or w < 1 or h < 1:
        return 'degenerate'
    if ann['category_id'] not in cat_ids:
        return 'category'
    if ann.get('iscrowd', False):
        return 'crowd'
    return segmentation_problem(ann)


def segmentation_problem(ann: dict) -> str:
    """What is wrong with an annotation's segmentation (as mmdet's ``LoadAnnotations``
    judges it), or ``''``.

    Args:
        ann (dict): A COCO annotation.

    Returns:
        str: ``'no_segmentation'``, ``'bad_polygon'`` (no polygon with >= 3 points),
        ``'bad_rle'`` (a dict without ``counts``/``size``) or ``''``.
    """
    seg = ann.get('segmentation')
    if not seg:
        return 'no_segmentation'
    if isinstance(seg, list):
        if not any(len(p) % 2 == 0 and len(p) >= 6 for p in seg):
            return 'bad_polygon'
    elif not (
        isinstance(seg, dict)
        and seg.get('counts') is not None
        and seg.get('size') is not None
        and isinstance(seg['counts'], (list, str))
    ):
        return 'bad_rle'
    return ''


def find_missing_files(data_list: List[dict]) -> List[dict]:
    """The entries of ``data_list`` whose ``img_path`` is a local path that does not exist."""
    missing = []
    for info in data_list:
        path = info.get('img_path')
        if path and '://' not in str(path) and not osp.exists(path):
            missing.append(info)
    return missing


def format_audit(name: str, counts: Counter, num_images: int, num_instances: int) -> str:
    """One log line: what was loaded and, per reason, how much was dropped or ignored."""
    parts = [f'{name}: {num_images} images, {num_instances} instances to prompt']
    if counts.get('empty_image'):
        parts.append(f'{counts["empty_image"]} images without annotations (no prompts)')
    for key, text in DROP_REASONS.items():
        if counts.get(key):
            parts.append(f'{counts[key]} {text}')
    return '; '.join(parts)
