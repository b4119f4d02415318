"""Read one rectangle of an image at a time, lazily where the file allows it.

:func:`open_region_reader` gives a reader with ``height``, ``width`` and
``read(box) -> (h, w, 3) uint8 RGB``. What is read lazily (only the bytes of the tiles
or strips that a rectangle touches):

* TIFF (any file that starts as one: ``.tif``, BigTIFF, ``.svs``, ...; the first page, as
  :func:`~mmsam.apis.image_io.load_image`),
  with ``tifffile``: grayscale (``MINISBLACK``) or RGB, extra samples (alpha) dropped,
  chunky or planar, 1-bit, 8-bit or 16-bit unsigned samples (16-bit scaled by
  :func:`~mmsam.apis.image_io.to_rgb_uint8`, ``round(v / 257)``, as ``load_image`` does for
  16-bit grayscale; Pillow reads 16-bit RGB TIFFs as their high bytes, so ``load_image``
  of those can be 1 lower), tiled or in strips, uncompressed
  (memory-mapped), or compressed with a codec tifffile decodes on its own (Deflate/zlib,
  PackBits, LZMA; LZW, JPEG, Zstd, WebP, ... when the ``imagecodecs`` package is
  installed; checked by decoding one segment when the file is opened). A compressed
  strip or tile larger than ``max_segment_bytes`` decoded is refused (a huge image stored
  as one strip: re-save it tiled).

Every other file (other formats, and TIFFs with a palette, another photometric, an
orientation tag other than top-left, signed/float samples or a codec tifffile lacks) is
read whole by ``load_image`` once; a file too large for that fails with its reason.
Arrays are read as they are (``(H, W, 3)`` uint8 after ``to_rgb_uint8``).
"""

import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .image_io import ImageReadError, load_image, to_rgb_uint8

#: Decoded size above which one TIFF strip or tile is refused (it would be read whole
#: for every rectangle).
MAX_SEGMENT_BYTES = 256 << 20

#: The first bytes of a TIFF (little/big endian) and of a BigTIFF.
_TIFF_MAGIC = (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')


def _is_tiff(path: str) -> bool:
    """Whether a file starts as a TIFF does (whatever its suffix: .tif, .svs, .btf, ...)."""
    with open(path, 'rb') as f:
        return f.read(4) in _TIFF_MAGIC


def _check_box(box: Sequence[int], height: int, width: int) -> Tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f'region {[x0, y0, x1, y1]} (XYXY) is not a non-empty part of the '
            f'{width} x {height} image'
        )
    return x0, y0, x1, y1


class ArrayRegionReader:
    """Rectangles of an image held in memory (read whole).

    Args:
        image (np.ndarray): ``(H, W)``, ``(H, W, 1/3/4)`` RGB(A) (see
            :func:`~mmsam.apis.image_io.to_rgb_uint8`).
        reason (str): Why the image is held whole (shown by :attr:`description`).
    """

    lazy = False

    def __init__(self, image: np.ndarray, reason: str = 'an array') -> None:
        self.image = to_rgb_uint8(np.asarray(image))
        self.height, self.width = self.image.shape[:2]
        self.description = f'read whole ({reason})'

    def read(self, box: Sequence[int]) -> np.ndarray:
        """The pixels of XYXY ``box``: ``(y1 - y0, x1 - x0, 3)`` uint8 RGB (a copy)."""
        x0, y0, x1, y1 = _check_box(box, self.height, self.width)
        return self.image[y0:y1, x0:x1].copy()

    def close(self) -> None:
        self.image = None


class TiffRegionReader:
    """Rectangles of the first page of a TIFF, decoding only the segments they touch.

    Args:
        path (str): The file.
        max_segment_bytes (int): Largest decoded strip/tile accepted.

    Raises:
        ValueError: The page cannot be read lazily (:func:`tiff_lazy_reason` says why).
    """

    lazy = True

    def __init__(self, path: str, max_segment_bytes: int = MAX_SEGMENT_BYTES) -> None:
        import tifffile

        self.path = path
        self._tif = tifffile.TiffFile(path)
        try:
            page = self._tif.pages.first
            reason = tiff_lazy_reason(page, max_segment_bytes)
            if reason:
                raise ValueError(f'{path}: cannot read lazily: {reason}')
            self._page = page
            # (separate samples, depth, height, width, contiguous samples)
            self._shaped = tuple(int(s) for s in page.shaped)
            self.height, self.width = self._shaped[2], self._shaped[3]
            self._memmap = None
            if page.is_memmappable:
                self._memmap = self._tif.asarray(out='memmap').reshape(self._shaped)
                how = 'memory-mapped, uncompressed'
            else:
                what = 'tiles' if page.is_tiled else 'strips'
                how = f'{len(page.dataoffsets)} {what}, compression {page.compression.name}'
                try:  # a codec tifffile lists may still lack its module: decode one now
                    self.read_raw([0, 0, 1, 1])
                except (ImportError, ValueError, KeyError, RuntimeError) as err:
                    raise ValueError(
                        f'{path}: cannot read lazily: {page.compression.name} segments '
                        f'do not decode ({type(err).__name__}: {err})'
                    ) from err
            self.description = f'read lazily with tifffile ({how})'
        except BaseException:
            self._tif.close()
            raise

    def _segments(self, x0: int, y0: int, x1: int, y1: int) -> list:
        """Indices of the strips/tiles that hold rows ``y0:y1`` and columns ``x0:x1``."""
        page = self._page
        planes, height, width = self._shaped[0], self.height, self.width
        if page.is_tiled:
            th, tw = int(page.tilelength), int(page.tilewidth)
            rows, cols = -(-height // th), -(-width // tw)
            return [
                (s * rows + r) * cols + c
                for s in range(planes)
                for r in range(y0 // th, (y1 - 1) // th + 1)
                for c in range(x0 // tw, (x1 - 1) // tw + 1)
            ]
        per_strip = min(int(page.rowsperstrip or height), height)
        strips = -(-height // per_strip)
        return [
            s * strips + r
            for s in range(planes)
            for r in range(y0 // per_strip, (y1 - 1) // per_strip + 1)
        ]

    def read_raw(self, box: Sequence[int]) -> np.ndarray:
        """The samples of XYXY ``box`` as stored: ``(h, w, samples)`` of the page's dtype."""
        x0, y0, x1, y1 = _check_box(box, self.height, self.width)
        planes, _, _, _, contig = self._shaped
        if self._memmap is not None:
            out = np.array(self._memmap[:, 0, y0:y1, x0:x1, :])
        else:
            page = self._page
            out = np.zeros((planes, y1 - y0, x1 - x0, contig), dtype=page.dtype)
            index = self._segments(x0, y0, x1, y1)
            offsets = [page.dataoffsets[i] for i in index]
            counts = [page.databytecounts[i] for i in index]
            decode = page.decode
            for data, i in self._tif.filehandle.read_segments(offsets, counts, indices=index):
                segment, (s, _, sy, sx, _), _ = decode(data, i, jpegtables=page.jpegtables)
                if segment is None:
                    continue  # an empty segment: zeros
                segment = segment[0]
                ya, yb = max(sy, y0), min(sy + segment.shape[0], y1)
                xa, xb = max(sx, x0), min(sx + segment.shape[1], x1)
                if ya < yb and xa < xb:
                    out[s, ya - y0 : yb - y0, xa - x0 : xb - x0] = segment[
                        ya - sy : yb - sy, xa - sx : xb - sx
                    ]
        return np.moveaxis(out, 0, 2).reshape(y1 - y0, x1 - x0, planes * contig)

    def read(self, box: Sequence[int]) -> np.ndarray:
        """The pixels of XYXY ``box``: ``(y1 - y0, x1 - x0, 3)`` uint8 RGB."""
        raw = self.read_raw(box)
        colours = 3 if int(self._page.photometric) == 2 else 1
        return to_rgb_uint8(raw[..., :colours], f'{self.path} region {list(box)}')

    def close(self) -> None:
        self._memmap = None
        self._tif.close()


def tiff_lazy_reason(page, max_segment_bytes: int = MAX_SEGMENT_BYTES) -> str:
    """Why a tifffile page cannot be read lazily, or ``''`` when it can."""
    import tifffile

    photometric = int(page.photometric)
    if photometric not in (1, 2):
        return f'photometric {page.photometric.name} (only MINISBLACK and RGB)'
    if page.dtype is None or page.dtype not in (np.uint8, np.uint16, np.bool_):
        return f'{page.bitspersample}-bit samples of type {page.dtype} (only 1, 8 and 16-bit)'
    orientation = page.tags.valueof(274)
    if orientation not in (None, 1):
        return f'orientation {orientation} (only top-left)'
    shaped = tuple(int(s) for s in page.shaped)
    if shaped[1] != 1 or 0 in shaped:
        return f'a volume or empty page (shape {page.shape})'
    samples = shaped[0] * shaped[4]
    if samples < (3 if photometric == 2 else 1):
        return f'{samples} samples per pixel'
    if page.is_subsampled:
        return 'subsampled chroma'
    if page.compression != 1:
        try:
            tifffile.TIFF.DECOMPRESSORS[page.compression]
        except KeyError as err:
            return str(err).strip('"\'')
    if not page.is_memmappable:
        if page.is_tiled:
            rows = int(page.tilelength)
            cols = int(page.tilewidth)
        else:
            rows = min(int(page.rowsperstrip or shaped[2]), shaped[2])
            cols = shaped[3]
        size = rows * cols * shaped[4] * np.dtype(page.dtype).itemsize
        if size > max_segment_bytes:
            return (
                f'one {"tile" if page.is_tiled else "strip"} decodes to {size >> 20} MiB '
                f'(over {max_segment_bytes >> 20} MiB): re-save the file tiled, e.g. '
                "tifffile.imwrite(path, image, tile=(512, 512), compression='zlib')"
            )
    return ''


RegionReader = Union[ArrayRegionReader, TiffRegionReader]


def open_region_reader(
    source: Union[str, os.PathLike, np.ndarray], max_segment_bytes: Optional[int] = None
) -> RegionReader:
    """A reader of rectangles of an image file or array (see the module docstring).

    Args:
        source (str | os.PathLike | np.ndarray): A file, or an ``(H, W[, C])`` array.
        max_segment_bytes (int, optional): See :class:`TiffRegionReader`.

    Returns:
        ArrayRegionReader | TiffRegionReader: Call ``close()`` when done. Its
        ``description`` says whether it reads lazily, and if not why.

    Raises:
        FileNotFoundError: No such file.
        ImageReadError: The file cannot be read (named, with the reason).
    """
    if isinstance(source, np.ndarray):
        return ArrayRegionReader(source)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f'image must be a file path or an array, got {type(source).__name__}')
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image file not found: {path}')
    reason = 'not a TIFF'
    if _is_tiff(path):
        import tifffile

        try:
            return TiffRegionReader(path, max_segment_bytes or MAX_SEGMENT_BYTES)
        except ValueError as err:
            reason = str(err).split('cannot read lazily: ', 1)[-1]
        except tifffile.TiffFileError as err:
            raise ImageReadError(f'not a readable TIFF: {path} ({err})') from err
    try:
        image = load_image(path)
    except ImageReadError as err:
        raise ImageReadError(f'{err} (it cannot be read tile by tile: {reason})') from err
    return ArrayRegionReader(image, reason)


__all__ = [
    'ArrayRegionReader',
    'TiffRegionReader',
    'RegionReader',
    'open_region_reader',
    'tiff_lazy_reason',
    'MAX_SEGMENT_BYTES',
]
