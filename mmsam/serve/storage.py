"""Accepted masks on disk: one JSON file per image, and the COCO / SA-1B exports.

Layout under the server's work folder::

    annotations/<image name>.json     one image's accepted masks (below)
    exports/coco.json                 every image, COCO instance segmentation
    exports/sa1b/<image name>.json    one SA-1B file per image (mmsam.apis.sa1b)

An image's file is ``{"format": "mmsam.serve.annotations", "version": 1, "image":
name, "height": H, "width": W, "annotations": [...]}``; each annotation holds
``id`` (1..N in order), ``label`` (text), ``segmentation`` (COCO RLE, ``str``
counts), ``area``, ``bbox`` (XYWH, of what the RLE decodes to), ``predicted_iou``,
``stability_score``, ``point_coords`` (``[[x, y], ...]``, the positive clicks),
``prompt`` (``points``, ``labels``, ``box``: what produced it), ``candidate`` (which
multimask output, 0..2, or -1) and ``source`` (``"click"`` or ``"amg"``).

Each document also has a ``revision``: 0 for an image without a file, 1 for the first
save, one more at each save (a file written before revisions existed reads as 1).

Writes replace the whole file atomically (:mod:`mmsam.utils.atomic_file`), never a mix or
a truncated file; a server restart reads the files back. Saves are optimistic: a save
that names the revision it was based on is refused (:class:`StaleRevision`, HTTP 409)
when the file has changed since, so two tabs on one image cannot silently overwrite each
other's work; the check and the write happen under one lock. A save without a revision
(a script) replaces the file whatever it holds (last write wins).
"""

import json
import math
import os.path as osp
import threading
from typing import Any, Dict, List, Optional, Sequence

from ..apis.sa1b import sa1b_image_ids, write_sa1b
from ..structures.polygons import (
    DEFAULT_POLYGON_MIN_IOU,
    mask_to_coco_polygons,
    segmentation_area_bbox,
)
from ..structures.rle import coco_rle_to_mask, uncompressed_to_coco_rle
from ..utils.atomic_file import atomic_write_json
from .folder import BadRequest, NotFound

FORMAT = 'mmsam.serve.annotations'
VERSION = 1
ANNOTATION_DIR = 'annotations'
EXPORT_DIR = 'exports'
SOURCES = ('click', 'amg')
MAX_LABEL_CHARS = 200


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f'{what} must be a number, got {value!r}')
    if not math.isfinite(float(value)):
        raise BadRequest(f'{what} must be finite, got {value!r}')
    return float(value)


def _points(value: Any, what: str) -> List[List[float]]:
    if not isinstance(value, list) or len(value) > 1000:
        raise BadRequest(f'{what} must be a list of [x, y] (at most 1000)')
    out = []
    for i, point in enumerate(value):
        if not isinstance(point, list) or len(point) != 2:
            raise BadRequest(f'{what}[{i}] must be [x, y], got {point!r}')
        out.append([_finite(v, f'{what}[{i}]') for v in point])
    return out


def _rle(segmentation: Any, height: int, width: int, where: str) -> Dict[str, Any]:
    """A COCO RLE (``str`` counts) of an uncompressed or compressed RLE of the image."""
    if not isinstance(segmentation, dict) or set(segmentation) != {'size', 'counts'}:
        raise BadRequest(f'{where}.segmentation must be an RLE {{"size", "counts"}}')
    size, counts = segmentation['size'], segmentation['counts']
    if size != [height, width]:
        raise BadRequest(f'{where}.segmentation size {size!r} is not the image [{height}, {width}]')
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise BadRequest(f'{where}.segmentation counts must be integers >= 0')
        if sum(counts) != height * width:
            raise BadRequest(
                f'{where}.segmentation counts add up to {sum(counts)}, not H*W = {height * width}'
            )
        return uncompressed_to_coco_rle({'size': size, 'counts': counts})
    if not isinstance(counts, str):
        raise BadRequest(f'{where}.segmentation counts must be a list or a COCO string')
    rle = {'size': size, 'counts': counts}
    try:
        coco_rle_to_mask(rle)
    except Exception as err:  # pycocotools raises plain exceptions on bad strings
        raise BadRequest(f'{where}.segmentation is not a valid COCO RLE ({err})') from err
    return rle


def normalize_annotation(ann: Any, index: int, height: int, width: int) -> Dict[str, Any]:
    """Check one client annotation and return it as stored (see the module docstring).

    Raises:
        BadRequest: a missing or malformed field (named).
    """
    where = f'annotations[{index}]'
    if not isinstance(ann, dict):
        raise BadRequest(f'{where} must be an object')
    label = ann.get('label', '')
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS:
        raise BadRequest(f'{where}.label must be a non-empty text of at most {MAX_LABEL_CHARS}')
    rle = _rle(ann.get('segmentation'), height, width, where)
    area, bbox = segmentation_area_bbox(rle, height, width)
    if area <= 0:
        raise BadRequest(f'{where} has an empty mask')
    prompt = ann.get('prompt') or {}
    if not isinstance(prompt, dict):
        raise BadRequest(f'{where}.prompt must be an object')
    points = _points(prompt.get('points', []), f'{where}.prompt.points')
    labels = prompt.get('labels', [])
    if (
        not isinstance(labels, list)
        or len(labels) != len(points)
        or any(v not in (0, 1) or isinstance(v, bool) for v in labels)
    ):
        raise BadRequest(f'{where}.prompt.labels must be one 0 or 1 per point')
    box = prompt.get('box')
    if box is not None:
        if not isinstance(box, list) or len(box) != 4:
            raise BadRequest(f'{where}.prompt.box must be [x1, y1, x2, y2] or null')
        box = [_finite(v, f'{where}.prompt.box') for v in box]
    source = ann.get('source', 'click')
    if source not in SOURCES:
        raise BadRequest(f'{where}.source must be one of {SOURCES}')
    candidate = ann.get('candidate', -1)
    if candidate not in (-1, 0, 1, 2) or isinstance(candidate, bool):
        raise BadRequest(f'{where}.candidate must be -1, 0, 1 or 2')
    positive = [p for p, v in zip(points, labels) if v == 1]
    point_coords = ann.get('point_coords')
    point_coords = _points(point_coords, f'{where}.point_coords') if point_coords else positive
    return {
        'id': index + 1,
        'label': label.strip(),
        'segmentation': rle,
        'area': area,
        'bbox': bbox,
        'predicted_iou': _finite(ann.get('predicted_iou', 0.0), f'{where}.predicted_iou'),
        'stability_score': _finite(ann.get('stability_score', 0.0), f'{where}.stability_score'),
        'point_coords': point_coords,
        'prompt': {'points': points, 'labels': labels, 'box': box},
        'candidate': candidate,
        'source': source,
    }


class StaleRevision(BadRequest):
    """A save based on a revision that is no longer the file's (status 409).

    Attributes:
        revision (int): The file's revision now.
    """

    def __init__(self, name: str, based_on: int, revision: int) -> None:
        super().__init__(
            f'{name} was changed in another tab or window (saved revision {revision}, this '
            f'save was based on revision {based_on}): reload to see it',
            409,
        )
        self.revision = revision


def _revision(value: Any) -> Optional[int]:
    """The revision a save is based on (``None``: no check), or :class:`BadRequest`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f'"revision" must be an integer >= 0 or null, got {value!r}')
    return value


class AnnotationStore:
    """Read and write the per-image annotation files and build the exports.

    Args:
        work_dir (str): The server's work folder.
        max_annotations (int): Most annotations one image may hold.
    """

    def __init__(self, work_dir: str, max_annotations: int = 10_000) -> None:
        self.work_dir = work_dir
        self.max_annotations = max_annotations
        self._lock = threading.Lock()

    def path(self, name: str) -> str:
        """The annotation file of an image name (checked by :class:`ImageFolder` first)."""
        return osp.join(self.work_dir, ANNOTATION_DIR, *name.split('/')) + '.json'

    def empty(self, name: str, height: int, width: int) -> Dict[str, Any]:
        return {
            'format': FORMAT,
            'version': VERSION,
            'image': name,
            'height': int(height),
            'width': int(width),
            'revision': 0,
            'annotations': [],
        }

    def read(self, name: str, height: int, width: int) -> Dict[str, Any]:
        """An image's document (an empty one when nothing was saved).

        Raises:
            ValueError: the file exists but is not a document of this image (named).
        """
        path = self.path(name)
        if not osp.isfile(path):
            return self.empty(name, height, width)
        with open(path, encoding='utf-8') as f:
            try:
                doc = json.load(f)
            except ValueError as err:
                raise ValueError(f'{path} is not valid JSON ({err}); move it away') from err
        if not isinstance(doc, dict) or doc.get('format') != FORMAT or doc.get('image') != name:
            raise ValueError(f'{path} is not the mmsam serve annotation file of {name}')
        if [doc.get('height'), doc.get('width')] != [height, width]:
            raise ValueError(
                f'{path} was saved for a {doc.get("height")}x{doc.get("width")} image, but '
                f'{name} is {height}x{width} now: move the file away to start again'
            )
        revision = doc.setdefault('revision', 1)  # a file from before revisions: 1
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            raise ValueError(f'{path} has revision {revision!r}, not an integer >= 1')
        return doc

    def write(
        self,
        name: str,
        height: int,
        width: int,
        annotations: Any,
        revision: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Check and save an image's annotations (the whole list), atomically.

        Args:
            name (str): The image name.
            height (int): The image height.
            width (int): The image width.
            annotations (list): Client annotations (:func:`normalize_annotation`).
            revision (int, optional): The revision the client loaded and changed; the
                save is refused if the file's revision is another. ``None``: no check.

        Returns:
            dict: The document written (its ``revision`` one more than the file's).

        Raises:
            BadRequest: malformed annotations or revision.
            StaleRevision: the file changed since ``revision``.
        """
        revision = _revision(revision)
        if not isinstance(annotations, list):
            raise BadRequest('"annotations" must be a list')
        if len(annotations) > self.max_annotations:
            raise BadRequest(
                f'{len(annotations)} annotations: more than the server allows '
                f'({self.max_annotations})',
                413,
            )
        doc = self.empty(name, height, width)
        doc['annotations'] = [
            normalize_annotation(a, i, height, width) for i, a in enumerate(annotations)
        ]
        with self._lock:
            current = self.read(name, height, width)['revision']
            if revision is not None and revision != current:
                raise StaleRevision(name, revision, current)
            doc['revision'] = current + 1
            atomic_write_json(doc, self.path(name))
        return doc

    # ------------------------------------------------------------------ exports
    def documents(self, images: Sequence[tuple]) -> List[Dict[str, Any]]:
        """The documents of ``(name, height, width)`` images, in that order."""
        return [self.read(name, h, w) for name, h, w in images]

    def export_coco(
        self,
        images: Sequence[tuple],
        mask_format: str = 'rle',
        polygon_min_iou: float = DEFAULT_POLYGON_MIN_IOU,
    ) -> Dict[str, Any]:
        """Write ``exports/coco.json``: every image, its accepted masks, one category per label.

        Args:
            images (Sequence[tuple]): ``(name, height, width)`` of every listed image
                (image ids are their 1-based positions).
            mask_format (str): ``'rle'`` or ``'polygon'`` (exact pixel-edge polygons,
                RLE for a mask whose polygons would not decode to IoU >=
                ``polygon_min_iou``).

        Returns:
            dict: The COCO dict written.
        """
        if mask_format not in ('rle', 'polygon'):
            raise BadRequest(f"mask_format must be 'rle' or 'polygon', got {mask_format!r}")
        docs = self.documents(images)
        labels = sorted({a['label'] for d in docs for a in d['annotations']})
        category = {label: i + 1 for i, label in enumerate(labels)}
        coco_images, annotations = [], []
        for image_id, doc in enumerate(docs, start=1):
            h, w = doc['height'], doc['width']
            coco_images.append(dict(id=image_id, file_name=doc['image'], height=h, width=w))
            for ann in doc['annotations']:
                seg = ann['segmentation']
                if mask_format == 'polygon':
                    seg = mask_to_coco_polygons(
                        coco_rle_to_mask(seg),
                        min_iou=polygon_min_iou,
                        name=f'{doc["image"]} annotation {ann["id"]}',
                    )
                area, bbox = segmentation_area_bbox(seg, h, w)
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=image_id,
                        category_id=category[ann['label']],
                        segmentation=seg,
                        area=area,
                        bbox=bbox,
                        iscrowd=0,
                        score=ann['predicted_iou'],
                    )
                )
        coco = dict(
            info=dict(description='mmsam serve: masks accepted on the interactive page'),
            images=coco_images,
            annotations=annotations,
            categories=[dict(id=i, name=label) for label, i in category.items()],
        )
        atomic_write_json(coco, self.export_path('coco.json'))
        return coco

    def export_sa1b(self, images: Sequence[tuple]) -> List[str]:
        """Write ``exports/sa1b/<image name>.json`` for every image (SA-1B layout).

        Returns:
            list[str]: The files written, in the images' order.
        """
        docs = self.documents(images)
        ids = sa1b_image_ids(d['image'] for d in docs)
        written = []
        for doc in docs:
            h, w = doc['height'], doc['width']
            records = [
                dict(ann, crop_box=[0, 0, w, h], point_coords=ann['point_coords'] or [])
                for ann in doc['annotations']
            ]
            path = self.export_path('sa1b', *doc['image'].split('/')) + '.json'
            write_sa1b(path, records, ids[doc['image']], doc['image'], h, w, first_annotation_id=1)
            written.append(path)
        return written

    def export_path(self, *parts: str) -> str:
        return osp.join(self.work_dir, EXPORT_DIR, *parts)

    def export_file(self, relative: Optional[str]) -> str:
        """An export file by its path under ``exports/`` (checked to stay inside)."""
        root = osp.realpath(self.export_path())
        path = osp.realpath(osp.join(root, *(relative or '').split('/')))
        if not path.startswith(root + osp.sep) or not osp.isfile(path):
            raise NotFound(f'no export named {relative!r}')
        return path
