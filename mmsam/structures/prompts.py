"""User prompts to checked arrays in the model's input frame: the one place for their rules.

SAM's prompts are points with labels (1 foreground, 0 background; -1 pads a prompt's
points to a common count), XYXY boxes with ``x2 >= x1`` and ``y2 >= y1``, and mask
inputs (low-resolution logits ``(1, 4E, 4E)`` per prompt), any subset per prompt.

* :func:`prepare_prompts`: what a user gives a predictor (numpy, torch or nested
  sequences, in original-image pixels, one prompt or a batch of ``N``) to checked
  float64 arrays in the input frame, ``N`` first (``SAMPredictor``, ``ONNXPredictor``,
  the command line through the predictor).
* :func:`check_prompt_batch`: the shapes the model takes (``(N, P, 2)`` points,
  ``(N, 4)`` boxes, ``(N, 1, 4E, 4E)`` mask inputs, one ``N``; the prompt encoder).
* :func:`check_box_order`: the box-order rule, for all of them.

Works without torch (the ONNX runtime), on tensors when torch is there.
"""

import importlib
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .._compat import torch_installed
from .transforms import apply_boxes, apply_coords, as_finite_float_array

torch = importlib.import_module('torch') if torch_installed() else None


def check_box_order(boxes: Any, name: str = 'box') -> None:
    """Refuse XYXY boxes with ``x2 < x1`` or ``y2 < y1``.

    Args:
        boxes (np.ndarray | Tensor): ``(N, 4)`` XYXY.
        name (str): The boxes' name in the message.

    Raises:
        ValueError: naming the first bad box, its index and its values.
    """
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if torch is not None and isinstance(bad, torch.Tensor):
        bad = bad.detach().cpu().numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f'{name} must be XYXY with x2 >= x1 and y2 >= y1; box {i} is {boxes[i].tolist()}'
        )


def prompt_batch_size(points: Optional[Tuple[Any, Any]], boxes: Any, masks: Any) -> int:
    """``N`` of a prompt batch (the first given prompt's), 1 without prompts; unchecked."""
    for value in (None if points is None else points[0], boxes, masks):
        if value is not None:
            return int(value.shape[0])
    return 1


def check_prompt_batch(
    points: Optional[Tuple[Any, Any]],
    boxes: Any,
    masks: Any,
    mask_input_size: Sequence[int],
) -> int:
    """Check the shapes of a prompt batch as the model takes it; its ``N``.

    Args:
        points (tuple, optional): coords ``(N, P, 2)`` and labels ``(N, P)``.
        boxes (Tensor | np.ndarray, optional): ``(N, 4)`` XYXY.
        masks (Tensor | np.ndarray, optional): ``(N, 1, 4E, 4E)`` logits.
        mask_input_size (tuple[int, int]): ``(4E, 4E)``.

    Returns:
        int: ``N`` (1 when no prompt is given: one empty prompt).

    Raises:
        ValueError: A shape that does not fit, or prompts of different ``N``.
    """
    sizes = []
    if points is not None:
        coords, labels = points
        if coords.ndim != 3 or coords.shape[-1] != 2:
            raise ValueError(f'point coords must have shape (N, P, 2), got {tuple(coords.shape)}')
        if tuple(labels.shape) != tuple(coords.shape[:2]):
            raise ValueError(
                f'point labels must have shape {tuple(coords.shape[:2])} (one per point), '
                f'got {tuple(labels.shape)}'
            )
        sizes.append(('points', coords.shape[0]))
    if boxes is not None:
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise ValueError(f'boxes must have shape (N, 4), got {tuple(boxes.shape)}')
        sizes.append(('boxes', boxes.shape[0]))
    if masks is not None:
        expected = (1, *(int(s) for s in mask_input_size))
        if masks.ndim != 4 or tuple(masks.shape[1:]) != expected:
            raise ValueError(
                f'mask inputs must have shape (N, {", ".join(map(str, expected))}), '
                f'got {tuple(masks.shape)}'
            )
        sizes.append(('masks', masks.shape[0]))
    if len({n for _, n in sizes}) > 1:
        raise ValueError(
            'prompts must have the same batch size N, got '
            + ', '.join(f'{name}={n}' for name, n in sizes)
        )
    return int(sizes[0][1]) if sizes else 1


class PromptArrays(NamedTuple):
    """Checked prompts in the input frame, ``N`` first (``None``: not given).

    Attributes:
        point_coords (np.ndarray | None): ``(N, P, 2)`` float64 ``(x, y)``.
        point_labels (np.ndarray | None): ``(N, P)`` float64 (integer values).
        boxes (np.ndarray | None): ``(N, 4)`` float64 XYXY.
        mask_inputs (np.ndarray | None): ``(N, 1, 4E, 4E)`` float64 logits.
        num_prompts (int): ``N``.
        batched (bool): Whether the prompts were given as a batch (``(N, ...)``);
            a predictor then returns ``(N, ...)`` results, else one prompt's.
    """

    point_coords: Optional[np.ndarray]
    point_labels: Optional[np.ndarray]
    boxes: Optional[np.ndarray]
    mask_inputs: Optional[np.ndarray]
    num_prompts: int
    batched: bool


def prepare_prompts(
    point_coords: Any = None,
    point_labels: Any = None,
    box: Any = None,
    mask_input: Any = None,
    *,
    original_size: Sequence[int],
    image_size: int,
    mask_input_size: Sequence[int],
    allow_batch: bool = True,
    binary_labels: bool = False,
) -> PromptArrays:
    """Check a user's prompts and map them to the input frame.

    One prompt: ``point_coords (P, 2)`` with ``point_labels (P,)``, ``box (4,)``
    XYXY, ``mask_input (1, 4E, 4E)``, any subset. A batch of ``N`` prompts (with
    ``allow_batch``): ``(N, P, 2)``, ``(N, P)``, ``(N, 4)``, ``(N, 1, 4E, 4E)``; a
    single prompt given with batched ones is repeated for each of the ``N``.

    Args:
        point_coords, point_labels, box, mask_input: numpy arrays, tensors or nested
            sequences, in original-image pixels (``None``: not given).
        original_size (tuple[int, int]): ``(H, W)`` of the image.
        image_size (int): The model's input side ``S`` (1024).
        mask_input_size (tuple[int, int]): ``(4E, 4E)``.
        allow_batch (bool): Accept batches; ``False`` for one prompt per call.
        binary_labels (bool): Allow labels 1 and 0 only; by default any integer
            (e.g. -1 pads the points of batched prompts).

    Returns:
        PromptArrays: The prompts, ``N`` first, in the input frame.

    Raises:
        ValueError: A value that is not numeric or finite, a shape that does not
            fit, points without labels, a bad label or box, or batches of
            different ``N``; the message names the argument and the shape expected.
    """
    if (point_coords is None) != (point_labels is None):
        given, missing = ('point_coords', 'point_labels')
        if point_coords is None:
            given, missing = missing, given
        raise ValueError(
            'point_coords and point_labels must be given together: '
            f'{given} was given without {missing}'
        )
    sizes = {}
    coords = labels = boxes = masks = None
    if point_coords is not None:
        coords = as_finite_float_array(point_coords, 'point_coords')
        labels = as_finite_float_array(point_labels, 'point_labels')
        if coords.ndim not in ((2, 3) if allow_batch else (2,)) or coords.shape[-1] != 2:
            shapes = '(P, 2) or (N, P, 2)' if allow_batch else '(P, 2)'
            one = '' if allow_batch else ' (one prompt per call)'
            raise ValueError(
                f'point_coords must have shape {shapes} as (x, y) pixels{one}, got {coords.shape}'
            )
        if labels.shape != coords.shape[:-1]:
            raise ValueError(
                f'point_labels must have shape {coords.shape[:-1]} (one label per point), '
                f'got {labels.shape}'
            )
        if binary_labels and not np.all(np.isin(labels, (0, 1))):
            raise ValueError('point_labels must be 1 (foreground) or 0 (background)')
        if np.any(labels != np.round(labels)):
            raise ValueError('point_labels must be integers (1 foreground, 0 background)')
        if coords.ndim == 3:
            sizes['point_coords'] = coords.shape[0]
        else:
            coords, labels = coords[None], labels[None]
    if box is not None:
        boxes = as_finite_float_array(box, 'box')
        if boxes.ndim not in ((1, 2) if allow_batch else (1,)) or boxes.shape[-1] != 4:
            shapes = '(4,) or (N, 4) as XYXY' if allow_batch else '(4,) as XYXY (one prompt)'
            raise ValueError(f'box must have shape {shapes}, got {boxes.shape}')
        if boxes.ndim == 2:
            sizes['box'] = boxes.shape[0]
        else:
            boxes = boxes[None]
        check_box_order(boxes)
    if mask_input is not None:
        masks = as_finite_float_array(mask_input, 'mask_input')
        size = tuple(int(s) for s in mask_input_size)
        if masks.ndim == 4 and masks.shape[1:] == (1, *size) and allow_batch:
            sizes['mask_input'] = masks.shape[0]
        elif masks.shape == (1, *size) or masks.shape == (1, 1, *size):
            masks = masks.reshape(1, 1, *size)
        else:
            batch = f' or (N, 1, {size[0]}, {size[1]})' if allow_batch else ''
            raise ValueError(
                f'mask_input must have shape (1, {size[0]}, {size[1]}){batch} '
                f'(low-resolution logits from predict), got {masks.shape}'
            )
    if len(set(sizes.values())) > 1:
        raise ValueError(
            'batched prompts must have the same N, got '
            + ', '.join(f'{k}: {v}' for k, v in sizes.items())
        )
    n = next(iter(sizes.values())) if sizes else 1

    def expand(a):
        return a if a is None or a.shape[0] == n else np.repeat(a, n, axis=0)

    coords, labels, boxes, masks = (expand(a) for a in (coords, labels, boxes, masks))
    if coords is not None:
        coords = apply_coords(coords, original_size, image_size)
    if boxes is not None:
        boxes = apply_boxes(boxes, original_size, image_size)
    return PromptArrays(coords, labels, boxes, masks, int(n), bool(sizes))
