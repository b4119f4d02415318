"""What the prompt transforms read from a pipeline's ``results``: a required key, or
boxes in any of mmdet's forms."""

from typing import Any

import numpy as np


def require_key(transform: object, results: dict, key: str, hint: str) -> Any:
    """``results[key]``, or a ``KeyError`` that names the transform and the fix.

    Args:
        transform (BaseTransform): The transform that needs the key (named by its class).
        results (dict): The pipeline's results.
        key (str): The key it needs.
        hint (str): What puts the key there (e.g. ``'put LoadAnnotations(with_bbox=True)
            before it in the pipeline'``).
    """
    if key not in results:
        raise KeyError(f'{type(transform).__name__} needs "{key}": {hint}')
    return results[key]


def boxes_array(boxes: Any) -> np.ndarray:
    """``(N, 4)`` float32 XYXY from mmdet's ``HorizontalBoxes``, a tensor or an array."""
    boxes = boxes.numpy() if hasattr(boxes, 'numpy') else np.asarray(boxes)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
