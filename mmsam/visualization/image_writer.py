"""Write images and masks as PNG files, whole or not at all."""

import os

import numpy as np
from PIL import Image

from ..utils.atomic_file import atomic_write


def save_png(path: str, image: np.ndarray) -> str:
    """Write an ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` uint8) image as PNG, atomically.

    Args:
        path (str): Destination; its folder is created if missing.
        image (np.ndarray): ``(H, W, 3)`` or ``(H, W)`` uint8.

    Returns:
        str: ``path``.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(
            f'image must be a uint8 numpy array, got {type(image).__name__} '
            f'({getattr(image, "dtype", None)})'
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f'image must have shape (H, W, 3) or (H, W), got {image.shape}')
    with atomic_write(os.fspath(path), 'wb') as f:
        Image.fromarray(np.ascontiguousarray(image)).save(f, format='PNG')
    return path


def save_mask_png(path: str, mask: np.ndarray) -> str:
    """Write a binary ``(H, W)`` mask as an 8-bit PNG (0 background, 255 mask), atomically."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f'mask must have shape (H, W), got {mask.shape}')
    return save_png(path, (mask > 0).astype(np.uint8) * 255)
