"""Run-length encodings of binary masks: uncompressed (SAM's) and COCO's compressed form.

An *uncompressed RLE* is ``{'size': [H, W], 'counts': [c0, c1, ...]}``: run lengths of
alternating 0s and 1s over the mask in column-major (Fortran) order, starting with a
run of 0s (possibly of length 0). A *COCO RLE* is pycocotools' compressed form,
``{'size': [H, W], 'counts': str}`` (``bytes`` accepted on input). These are the
formats of the official ``segment_anything`` and of SA-1B.
"""

from typing import Any, Dict, List, Sequence, Union

import numpy as np
import torch

RLE = Dict[str, Any]


def mask_to_rle(masks: Union[torch.Tensor, np.ndarray]) -> List[RLE]:
    """Encode binary masks as uncompressed RLEs, all at once.

    Args:
        masks (Tensor | np.ndarray): ``(N, H, W)`` bool (or 0/1), any device.

    Returns:
        list[dict]: ``N`` uncompressed RLEs with Python-int counts.
    """
    masks = torch.as_tensor(masks)
    if masks.dim() != 3:
        raise ValueError(f'masks must have shape (N, H, W), got {tuple(masks.shape)}')
    n, h, w = masks.shape
    if n == 0:
        return []
    size = h * w
    flat = masks.bool().transpose(1, 2).reshape(n, size)  # column-major pixel order
    first = flat[:, 0].cpu().numpy()
    changes = (flat[:, 1:] != flat[:, :-1]).nonzero().cpu().numpy()  # (K, 2), row-major
    per_mask = np.bincount(changes[:, 0], minlength=n)
    positions = np.split(changes[:, 1] + 1, np.cumsum(per_mask)[:-1])
    out = []
    for i in range(n):
        bounds = np.concatenate(([0], positions[i], [size]))
        counts = np.diff(bounds).tolist()
        if first[i]:
            counts.insert(0, 0)
        out.append({'size': [h, w], 'counts': counts})
    return out


def rle_to_mask(rle: RLE) -> np.ndarray:
    """Decode an uncompressed RLE.

    Args:
        rle (dict): ``{'size': [H, W], 'counts': list[int]}``.

    Returns:
        np.ndarray: ``(H, W)`` bool.
    """
    h, w = (int(s) for s in rle['size'])
    counts = np.asarray(rle['counts'], dtype=np.int64)
    if counts.sum() != h * w:
        raise ValueError(f'RLE counts sum to {counts.sum()}, expected H * W = {h * w}')
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T


def rle_area(rle: RLE) -> int:
    """Foreground pixels of an uncompressed RLE (the odd runs)."""
    return int(sum(rle['counts'][1::2]))


def uncompressed_to_coco_rle(rle: RLE) -> RLE:
    """Compress an uncompressed RLE to COCO's form with a JSON-ready ``str`` counts."""
    from pycocotools import mask as mask_api

    h, w = (int(s) for s in rle['size'])
    coco = mask_api.frPyObjects(rle, h, w)
    return {'size': [int(s) for s in coco['size']], 'counts': coco['counts'].decode('utf-8')}


def masks_to_coco_rle(masks: Union[torch.Tensor, np.ndarray]) -> List[RLE]:
    """Encode binary masks directly as COCO RLEs (``str`` counts).

    Args:
        masks (Tensor | np.ndarray): ``(N, H, W)`` bool.

    Returns:
        list[dict]: ``N`` COCO RLEs.
    """
    from pycocotools import mask as mask_api

    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f'masks must have shape (N, H, W), got {masks.shape}')
    if len(masks) == 0:
        return []
    fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
    encoded = mask_api.encode(fortran)
    return [
        {'size': [int(s) for s in e['size']], 'counts': e['counts'].decode('utf-8')}
        for e in encoded
    ]


def coco_rle_to_mask(rle: RLE) -> np.ndarray:
    """Decode a COCO RLE (``str`` or ``bytes`` counts, or uncompressed list counts).

    Returns:
        np.ndarray: ``(H, W)`` bool.
    """
    from pycocotools import mask as mask_api

    if isinstance(rle.get('counts'), list):
        return rle_to_mask(rle)
    counts = rle['counts']
    if isinstance(counts, str):
        counts = counts.encode('utf-8')
    h, w = (int(s) for s in rle['size'])
    return mask_api.decode({'size': [h, w], 'counts': counts}).astype(bool)


def coco_rle_area(rles: Sequence[RLE]) -> np.ndarray:
    """Areas of COCO RLEs (``str`` or ``bytes`` counts).

    Returns:
        np.ndarray: ``(N,)`` int64.
    """
    from pycocotools import mask as mask_api

    objs = [
        {
            'size': [int(s) for s in r['size']],
            'counts': r['counts'].encode('utf-8') if isinstance(r['counts'], str) else r['counts'],
        }
        for r in rles
    ]
    return np.asarray(mask_api.area(objs), dtype=np.int64).reshape(-1)
