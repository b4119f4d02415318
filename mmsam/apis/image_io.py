"""Load any image a user is likely to have as ``(H, W, 3)`` uint8 RGB, and list image folders.

Conversions (the way a photo viewer shows the image):

* EXIF orientation is applied (the pixels are rotated/flipped as a viewer shows them).
* Grayscale (``L``, ``1``) is repeated over three channels; palette (``P``) images are
  expanded to their colours; CMYK, YCbCr, LAB and HSV are converted to RGB.
* Alpha (``RGBA``, ``LA``, ``PA``, palette transparency) is **dropped**, keeping the
  colour channels as they are; this is what ``cv2.imread`` / ``mmcv.imread`` (and so
  mmdet's ``LoadImageFromFile``) give, so SAM sees the pixels a detector trained on the
  same files sees.
* 16-bit images are scaled to 8 bits (``round(v / 257)``, so 65535 -> 255); 32-bit
  integer and float images are scaled by their range (see :func:`to_rgb_uint8`).
* Multi-frame files (GIF, TIFF) give their first frame.
"""

import os
from pathlib import Path
from typing import List, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Suffixes treated as images when listing a folder (lower case).
IMAGE_SUFFIXES = (
    '.jpg',
    '.jpeg',
    '.png',
    '.bmp',
    '.tif',
    '.tiff',
    '.webp',
    '.gif',
    '.ppm',
    '.pgm',
    '.pbm',
)

PathOrArray = Union[str, os.PathLike, np.ndarray, Image.Image]

#: 8-bit PIL modes that ``mmcv.imfrombytes(..., 'color', 'rgb', backend='pillow')``
#: decodes as described above (EXIF orientation, then PIL's RGB conversion, alpha of
#: ``RGBA`` dropped); the other modes (16-bit, 32-bit, float, ``LA``/``PA``) are
#: mmsam's own (see :func:`load_image`).
_MMCV_MODES = ('RGB', 'RGBA', 'L', '1', 'P', 'CMYK', 'YCbCr')


class ImageReadError(ValueError):
    """A file exists but is not a readable, non-empty image."""


def _scale_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a numeric array to uint8 (see :func:`to_rgb_uint8`)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = array[np.isfinite(array)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            return np.clip(np.nan_to_num(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f'image must hold numbers, got dtype {array.dtype}')
    array = np.nan_to_num(array.astype(np.float64))
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 255:
        return np.round(array).astype(np.uint8)
    if low >= 0 and high <= 65535:
        return np.round(array / 257.0).astype(np.uint8)
    span = max(high - low, 1e-12)
    return np.round((array - low) * (255.0 / span)).astype(np.uint8)


def to_rgb_uint8(image: np.ndarray, name: str = 'image') -> np.ndarray:
    """Convert an array in RGB(A) order to ``(H, W, 3)`` uint8.

    Args:
        image (np.ndarray): ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``
            (alpha dropped). uint8 is kept; uint16 is divided by 257; bool becomes
            0/255; floats in ``[0, 1]`` are multiplied by 255; other values in
            ``[0, 255]`` are rounded, in ``[0, 65535]`` divided by 257, anything else
            min-max scaled.
        name (str): What to call the image in error messages.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8, C-contiguous.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f'{name} must be a numpy array, got {type(image).__name__}')
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        channels = image.shape[2]
    elif image.ndim == 2:
        channels = 0
    else:
        raise ValueError(
            f'{name} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}'
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageReadError(f'{name} is empty: shape {image.shape}')
    if channels == 4:
        image = image[..., :3]
    image = _scale_to_uint8(image)
    if channels in (0, 1):
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(image)


def _pil_to_rgb_uint8(img: Image.Image, name: str) -> np.ndarray:
    """Decode a PIL image to ``(H, W, 3)`` uint8 RGB (orientation already applied)."""
    if img.width == 0 or img.height == 0:
        raise ImageReadError(f'{name} is empty: {img.width}x{img.height} pixels')
    mode = img.mode
    if mode.startswith('I;16'):
        array = np.array(img, dtype=np.uint16)
        return to_rgb_uint8(array, name)
    if mode in ('I', 'F'):
        return to_rgb_uint8(np.asarray(img), name)
    if mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        img = img.convert('RGBA')
        return np.ascontiguousarray(np.asarray(img)[..., :3])
    if mode != 'RGB':
        img = img.convert('RGB')
    return np.array(img)  # a writable copy


def load_image(path_or_array: PathOrArray) -> np.ndarray:
    """Load an image file (or convert an array / PIL image) to ``(H, W, 3)`` uint8 RGB.

    See the module docstring for the conversions (EXIF orientation applied, alpha
    dropped, 16-bit scaled to 8-bit, grayscale and palette expanded).

    8-bit files are decoded by ``mmcv.imfrombytes`` (Pillow backend), as OpenMMLab's
    pipelines read them. What mmsam adds where mmcv lacks it: 16-bit, 32-bit integer and
    float images scaled to 8 bits (mmcv's Pillow conversion clips them at 255), ``LA`` /
    ``PA`` alpha dropped (mmcv paints ``LA`` over a grey-brown background), arrays and
    PIL images taken as well, and a missing, empty, truncated or unidentified file
    reported by name (:class:`ImageReadError`).

    Args:
        path_or_array (str | os.PathLike | np.ndarray | PIL.Image.Image): A file
            path, an array in RGB(A) order (see :func:`to_rgb_uint8`), or a PIL image.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8, RGB, C-contiguous.

    Raises:
        FileNotFoundError: The path does not exist (or is a folder).
        ImageReadError: The file is empty, not an image, truncated, or has no pixels.
    """
    if isinstance(path_or_array, np.ndarray):
        return to_rgb_uint8(path_or_array)
    if isinstance(path_or_array, Image.Image):
        return _pil_to_rgb_uint8(ImageOps.exif_transpose(path_or_array), 'image')
    if not isinstance(path_or_array, (str, os.PathLike)):
        raise ValueError(
            'image must be a file path, a numpy array or a PIL image, got '
            f'{type(path_or_array).__name__}'
        )
    path = os.fspath(path_or_array)
    if not os.path.exists(path):
        raise FileNotFoundError(f'image file not found: {path}')
    if os.path.isdir(path):
        raise FileNotFoundError(f'expected an image file, got a folder: {path}')
    if os.path.getsize(path) == 0:
        raise ImageReadError(f'image file is empty (0 bytes): {path}')
    try:
        with Image.open(path) as img:
            if img.mode in _MMCV_MODES and img.width and img.height:
                import mmcv

                with open(path, 'rb') as f:
                    content = f.read()
                return mmcv.imfrombytes(content, 'color', 'rgb', backend='pillow')
            img = ImageOps.exif_transpose(img)
            return _pil_to_rgb_uint8(img, f'image {path}')
    except UnidentifiedImageError as err:
        raise ImageReadError(f'not an image file (PIL cannot identify it): {path}') from err
    except Image.DecompressionBombError as err:
        raise ImageReadError(
            f'image {path} has more pixels than PIL allows ({Image.MAX_IMAGE_PIXELS}); '
            'raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file'
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageReadError):
            raise
        raise ImageReadError(f'cannot decode image {path}: {err}') from err


def list_images(path: Union[str, os.PathLike], recursive: bool = True) -> List[str]:
    """Image files under a folder (sorted), or ``[path]`` for a single file.

    Args:
        path (str | os.PathLike): A file or a folder.
        recursive (bool): Also look in sub-folders.

    Returns:
        list[str]: Paths whose suffix is in :data:`IMAGE_SUFFIXES` (any case), hidden
        files (``.name``) left out (``mmengine.utils.scandir``); a file given directly is
        returned whatever its suffix, so that reading it reports it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f'no such image file or folder: {path}')
    if os.path.isfile(path):
        return [path]
    from mmengine.utils import scandir  # hidden files left out, suffixes in any case

    found = scandir(path, IMAGE_SUFFIXES, recursive=recursive, case_sensitive=False)
    return sorted(str(Path(path) / rel) for rel in found)
