"""Resize-longest-side transforms shared by the model, the predictor and the tools.

SAM resizes an image so that its longest side is ``long_side`` (1024) and maps
prompt coordinates by the same per-axis factors. These functions reproduce the
official ``ResizeLongestSide`` exactly (PIL bilinear on uint8, the same
rounding), for numpy arrays and torch tensors alike.
"""

import importlib
from typing import Sequence, Tuple, TypeVar, Union

import numpy as np
from PIL import Image

from .._compat import torch_installed

# the ONNX runtime (mmsam.deploy) serves without torch
torch = importlib.import_module('torch') if torch_installed() else None

ArrayLike = TypeVar('ArrayLike', np.ndarray, 'torch.Tensor')


def get_preprocess_shape(height: int, width: int, long_side: int) -> Tuple[int, int]:
    """Size ``(h, w)`` of an ``height x width`` image resized to ``long_side``.

    Args:
        height (int): Original height ``H``.
        width (int): Original width ``W``.
        long_side (int): Target length of the longest side.

    Returns:
        tuple[int, int]: ``(int(H * s + 0.5), int(W * s + 0.5))`` with
        ``s = long_side / max(H, W)``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f'image size must be positive, got (H, W) = ({height}, {width})')
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_longest_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 image with PIL's bilinear filter.

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8.
        long_side (int): Target length of the longest side.

    Returns:
        np.ndarray: ``(h, w, 3)`` uint8 (see :func:`get_preprocess_shape`).
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        dtype = getattr(image, 'dtype', None)
        raise ValueError(f'image must be a uint8 numpy array, got {type(image).__name__} ({dtype})')
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must have shape (H, W, 3), got {image.shape}')
    h, w = get_preprocess_shape(image.shape[0], image.shape[1], long_side)
    if (h, w) == image.shape[:2]:
        return image.copy()
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.BILINEAR)
    return np.array(resized)


def apply_coords(coords: ArrayLike, original_size: Sequence[int], long_side: int) -> ArrayLike:
    """Map ``(..., 2)`` pixel coordinates ``(x, y)`` from the original to the input frame.

    Args:
        coords (np.ndarray | Tensor): ``(..., 2)``.
        original_size (tuple[int, int]): ``(H, W)`` of the original image.
        long_side (int): Target length of the longest side.

    Returns:
        Same type as ``coords``: float64 for numpy, float32 for tensors (as the
        official transforms), a new array.
    """
    old_h, old_w = int(original_size[0]), int(original_size[1])
    new_h, new_w = get_preprocess_shape(old_h, old_w, long_side)
    if torch is not None and isinstance(coords, torch.Tensor):
        out = coords.to(torch.float32).clone()
    else:
        out = np.array(coords, dtype=float)
    if out.shape[-1] != 2:
        raise ValueError(f'coordinates must have shape (..., 2), got {tuple(out.shape)}')
    out[..., 0] = out[..., 0] * (new_w / old_w)
    out[..., 1] = out[..., 1] * (new_h / old_h)
    return out


def apply_boxes(boxes: ArrayLike, original_size: Sequence[int], long_side: int) -> ArrayLike:
    """Map ``(..., 4)`` XYXY boxes from the original to the input frame.

    Returns:
        Same type as ``boxes``, shape ``(N, 4)`` (flattened leading dims).
    """
    if boxes.shape[-1] != 4:
        raise ValueError(f'boxes must have shape (..., 4), got {tuple(boxes.shape)}')
    return apply_coords(boxes.reshape(-1, 2, 2), original_size, long_side).reshape(-1, 4)


def image_to_rgb_uint8(
    image: Union[np.ndarray, 'torch.Tensor'], image_format: str = 'RGB'
) -> np.ndarray:
    """Validate an ``(H, W, 3)`` uint8 image and return it in RGB order.

    Args:
        image (np.ndarray | Tensor): ``(H, W, 3)`` uint8.
        image_format (str): ``'RGB'`` or ``'BGR'``.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8, RGB.
    """
    if torch is not None and isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(f'image must be a numpy array, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError(
            f'image must be uint8 (0..255), got dtype {image.dtype}; convert it first, '
            'e.g. with mmsam.apis.load_image or np.clip(x, 0, 255).astype(np.uint8)'
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f'image must have shape (H, W, 3), got {image.shape}; convert grayscale/RGBA '
            'images to RGB first'
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'image is empty: shape {image.shape}')
    fmt = image_format.upper()
    if fmt not in ('RGB', 'BGR'):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    return image[..., ::-1] if fmt == 'BGR' else image


def as_finite_float_array(value, name: str) -> np.ndarray:
    """``value`` (array, tensor or nested sequence) as a finite float64 numpy array.

    Args:
        value: Prompt coordinates, labels, boxes or mask logits.
        name (str): The argument's name, for the error message.

    Returns:
        np.ndarray: float64, same shape.

    Raises:
        ValueError: if ``value`` is not numeric or holds NaN or inf.
    """
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f'{name} must be numeric, got {type(value).__name__}') from err
    if not np.all(np.isfinite(array)):
        raise ValueError(f'{name} must hold finite numbers, got NaN or inf')
    return array
