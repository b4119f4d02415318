"""SA-1B annotation files: one JSON per image, as Meta published the SA-1B dataset.

Layout::

    {"image": {"image_id": int, "width": int, "height": int, "file_name": str},
     "annotations": [{"id": int, "segmentation": {"size": [H, W], "counts": str},
                      "bbox": [x, y, w, h], "area": int, "predicted_iou": float,
                      "stability_score": float, "crop_box": [x, y, w, h],
                      "point_coords": [[x, y]]}, ...]}

``segmentation`` is a COCO RLE (pycocotools, compressed ``counts`` as a string).

``image_id`` of a file written for a folder is :func:`sa1b_image_id` of the image's
path relative to that folder: the same image keeps its id across reruns (adding or
removing other images changes nothing), and two images never share one
(:func:`sa1b_image_ids` checks).
"""

import hashlib
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from ..structures.rle import coco_rle_to_mask, masks_to_coco_rle, uncompressed_to_coco_rle
from ..utils.atomic_file import atomic_write_json

ANNOTATION_KEYS = (
    'id',
    'segmentation',
    'bbox',
    'area',
    'predicted_iou',
    'stability_score',
    'crop_box',
    'point_coords',
)


#: Image ids lie in ``[1, MAX_IMAGE_ID]``: integers that every JSON reader keeps exactly
#: (JavaScript's safe integers).
MAX_IMAGE_ID = 2**53 - 1


def sa1b_image_id(file_name: str) -> int:
    """The image id of an image, from its path relative to the input folder.

    A hash (SHA-256) of the path with ``/`` separators, so it is the same on every
    run and every machine.

    Args:
        file_name (str): The image's relative path (the SA-1B ``file_name``).

    Returns:
        int: In ``[1, MAX_IMAGE_ID]``.
    """
    text = str(file_name).replace(os.sep, '/')
    digest = hashlib.sha256(text.encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big') % MAX_IMAGE_ID + 1


def sa1b_image_ids(file_names: Iterable[str]) -> Dict[str, int]:
    """:func:`sa1b_image_id` of each name, checked to be unique.

    Args:
        file_names (Iterable[str]): Relative image paths.

    Returns:
        dict[str, int]: Name -> id.

    Raises:
        ValueError: Two names hash to the same id (a chance of about ``n**2 / 2**54``
            for ``n`` images), naming both.
    """
    ids: Dict[str, int] = {}
    owner: Dict[int, str] = {}
    for name in file_names:
        image_id = sa1b_image_id(name)
        if image_id in owner and owner[image_id] != name:
            raise ValueError(
                f'images {owner[image_id]!r} and {name!r} hash to the same SA-1B image_id '
                f'{image_id}; rename one of them'
            )
        owner[image_id] = name
        ids[name] = image_id
    return ids


def _number(value: Any) -> Union[int, float]:
    """A plain Python number of the same kind (numpy and torch scalars included)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f'expected a number, got {value!r}')
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)


def _coco_segmentation(segmentation: Any, index: int) -> Dict[str, Any]:
    """Any of the generator's output modes as a COCO RLE with ``str`` counts."""
    if isinstance(segmentation, np.ndarray):
        if segmentation.ndim != 2:
            raise ValueError(
                f'records[{index}]["segmentation"] must be an (H, W) mask, '
                f'got shape {segmentation.shape}'
            )
        return masks_to_coco_rle(segmentation[None].astype(bool))[0]
    if isinstance(segmentation, dict) and 'size' in segmentation and 'counts' in segmentation:
        counts = segmentation['counts']
        if isinstance(counts, list):
            return uncompressed_to_coco_rle(segmentation)
        if isinstance(counts, bytes):
            counts = counts.decode('utf-8')
        return {'size': [int(s) for s in segmentation['size']], 'counts': counts}
    raise ValueError(
        f'records[{index}]["segmentation"] must be a binary mask or an RLE dict with '
        f'"size" and "counts", got {type(segmentation).__name__}'
    )


def records_to_sa1b(
    records: Sequence[Dict[str, Any]],
    image_id: int,
    file_name: str,
    height: Optional[int] = None,
    width: Optional[int] = None,
    first_annotation_id: int = 0,
) -> Dict[str, Any]:
    """Build an SA-1B dict from :class:`AutomaticMaskGenerator` records.

    Args:
        records (list[dict]): Generator records in any ``output_mode``.
        image_id (int): The image's id.
        file_name (str): The image's file name (as stored next to the JSON).
        height (int, optional): Image height; taken from the masks when omitted.
        width (int, optional): Image width; taken from the masks when omitted.
        first_annotation_id (int): Id of the first annotation; the others follow.

    Returns:
        dict: ``{'image': {...}, 'annotations': [...]}``, JSON-serializable.
    """
    annotations = []
    for i, record in enumerate(records):
        missing = [k for k in ANNOTATION_KEYS[1:] if k not in record]
        if missing:
            raise ValueError(f'records[{i}] lacks {missing}')
        seg = _coco_segmentation(record['segmentation'], i)
        size = [int(s) for s in seg['size']]
        if height is None or width is None:
            height, width = size
        if size != [int(height), int(width)]:
            raise ValueError(
                f'records[{i}] has a mask of size {size}, expected [{height}, {width}]'
            )
        annotations.append(
            {
                'id': int(first_annotation_id) + i,
                'segmentation': seg,
                'bbox': [_number(v) for v in record['bbox']],
                'area': int(record['area']),
                'predicted_iou': float(record['predicted_iou']),
                'stability_score': float(record['stability_score']),
                'crop_box': [_number(v) for v in record['crop_box']],
                'point_coords': [[_number(v) for v in p] for p in record['point_coords']],
            }
        )
    if height is None or width is None:
        raise ValueError('height and width are needed when there are no records')
    image = {
        'image_id': int(image_id),
        'width': int(width),
        'height': int(height),
        'file_name': str(file_name),
    }
    return {'image': image, 'annotations': annotations}


def write_sa1b(
    path: str, records: Sequence[Dict[str, Any]], *args: Any, **kwargs: Any
) -> Dict[str, Any]:
    """Write one image's SA-1B JSON, whole or not at all (temporary file, then rename).

    Arguments after ``path`` as :func:`records_to_sa1b` (``image_id``, ``file_name``,
    ``height``, ``width``, ``first_annotation_id``); an empty ``records`` writes a
    valid file with no annotations (then ``height`` and ``width`` are required).

    Returns:
        dict: What was written.
    """
    data = records_to_sa1b(records, *args, **kwargs)
    atomic_write_json(data, path)
    return data


def _check_sa1b(data: Any, path: str) -> None:
    if not isinstance(data, dict) or 'image' not in data or 'annotations' not in data:
        raise ValueError(f'{path}: not an SA-1B file (needs "image" and "annotations")')
    image = data['image']
    for key in ('image_id', 'width', 'height', 'file_name'):
        if not isinstance(image, dict) or key not in image:
            raise ValueError(f'{path}: "image" lacks "{key}"')
    if not isinstance(data['annotations'], list):
        raise ValueError(f'{path}: "annotations" must be a list')
    for i, ann in enumerate(data['annotations']):
        seg = ann.get('segmentation') if isinstance(ann, dict) else None
        if not isinstance(seg, dict) or 'size' not in seg or 'counts' not in seg:
            raise ValueError(f'{path}: annotations[{i}] has no RLE "segmentation"')
        if [int(s) for s in seg['size']] != [int(image['height']), int(image['width'])]:
            raise ValueError(
                f'{path}: annotations[{i}] mask size {seg["size"]} differs from the image '
                f'size [{image["height"]}, {image["width"]}]'
            )


def read_sa1b(path: str) -> Dict[str, Any]:
    """Read and check an SA-1B JSON.

    Args:
        path (str): The file.

    Returns:
        dict: ``{'image': {...}, 'annotations': [...]}`` with RLE segmentations.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'SA-1B file not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: not valid JSON ({err})') from err
    _check_sa1b(data, path)
    return data


def decode_sa1b_masks(data_or_path: Union[str, Dict[str, Any]]) -> np.ndarray:
    """The binary masks of an SA-1B file (or of a dict read from one).

    Returns:
        np.ndarray: ``(N, H, W)`` bool, in annotation order.
    """
    data = read_sa1b(data_or_path) if isinstance(data_or_path, str) else data_or_path
    h, w = int(data['image']['height']), int(data['image']['width'])
    annotations: List[Dict[str, Any]] = data['annotations']
    masks = np.zeros((len(annotations), h, w), dtype=bool)
    for i, ann in enumerate(annotations):
        masks[i] = coco_rle_to_mask(ann['segmentation'])
    return masks
