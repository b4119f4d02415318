"""The image folder a server serves: listing, safe names, display bytes and uploads.

Every image is named by its path relative to the folder, ``/`` separated (the name the
embedding store, the annotation files and the exports use). A name from a request is
resolved and checked to lie inside the folder (``..``, absolute paths, links that lead
out and names of files that are not listed images are refused), so a request can only
reach the images the listing shows.
"""

import io
import os
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Tuple

from PIL import Image, UnidentifiedImageError

from ..apis.image_io import IMAGE_SUFFIXES, list_images, load_image

#: PIL formats a browser shows as they are (others are re-encoded as PNG).
_BROWSER_FORMATS = {'JPEG': 'image/jpeg', 'PNG': 'image/png', 'WEBP': 'image/webp'}
#: PIL modes a browser shows with the pixels :func:`load_image` gives.
_BROWSER_MODES = ('RGB', 'RGBA', 'L', 'P', '1')
_EXIF_ORIENTATION = 0x0112


class BadRequest(ValueError):
    """A request the server refuses (status 400, or the ``status`` given)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotFound(BadRequest):
    """A name that is not one of the folder's images (status 404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


@dataclass(frozen=True)
class Limits:
    """Bounds on what clients may send and on the images served.

    Attributes:
        max_request_bytes (int): Largest request body (uploads, annotation PUTs).
        max_image_pixels (int): Largest image ``H * W`` (uploaded or listed).
        max_annotations (int): Most annotations in one image's file.
    """

    max_request_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 64_000_000
    max_annotations: int = 10_000


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class ImageFolder:
    """The images under ``root`` (recursively), less those under ``work_dir``.

    Args:
        root (str): The image folder.
        work_dir (str): The server's own folder (annotations, embeddings, exports);
            its files are never listed, even when it lies inside ``root``.
        limits (Limits): Size bounds.
    """

    def __init__(self, root: str, work_dir: str, limits: Limits = Limits()) -> None:
        if not osp.isdir(root):
            raise NotADirectoryError(f'image folder not found (or not a folder): {root}')
        self.root = osp.realpath(root)
        self.work_dir = osp.realpath(work_dir)
        self.limits = limits

    def names(self) -> List[str]:
        """The images' names (relative paths, ``/`` separated), sorted."""
        names = []
        for path in list_images(self.root):
            real = osp.realpath(path)
            if _is_within(real, self.work_dir) or not _is_within(real, self.root):
                continue  # the server's own files, or a link leading out of the folder
            name = osp.relpath(path, self.root).replace(os.sep, '/')
            if not any(part.startswith('.') for part in name.split('/')):
                names.append(name)  # hidden folders are not served (see path)
        return names

    def path(self, name: str) -> str:
        """The file of an image name, checked to be a listed image inside the folder.

        Raises:
            NotFound: ``name`` leaves the folder, is not an image file of it, or lies
                in the server's own folder.
        """
        if not isinstance(name, str) or not name or '\x00' in name or '\\' in name:
            raise NotFound(f'no image named {name!r}')
        parts = name.split('/')
        if name.startswith('/') or any(p in ('', '.', '..') or p.startswith('.') for p in parts):
            raise NotFound(f'no image named {name!r} in the folder')
        path = osp.realpath(osp.join(self.root, *parts))
        if not _is_within(path, self.root) or _is_within(path, self.work_dir):
            raise NotFound(f'no image named {name!r} in the folder')
        if not osp.isfile(path) or not path.lower().endswith(IMAGE_SUFFIXES):
            raise NotFound(f'no image named {name!r} in the folder')
        return path

    def load(self, name: str):
        """The image's pixels, ``(H, W, 3)`` uint8 RGB (as every mmsam command reads it).

        Raises:
            BadRequest: an image larger than ``limits.max_image_pixels`` (413) or one
                that cannot be decoded (422).
        """
        path = self.path(name)
        self.check_pixels(*self.size(name), name)
        try:
            return load_image(path)
        except ValueError as err:
            raise BadRequest(f'{name}: {err}', 422) from err

    def size(self, name: str) -> Tuple[int, int]:
        """``(H, W)`` as :meth:`load` gives it (EXIF orientation applied), from the header."""
        path = self.path(name)
        try:
            with Image.open(path) as img:
                width, height = img.size
                if img.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                    width, height = height, width
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise BadRequest(f'{name}: not a readable image ({err})', 422) from err
        return height, width

    def check_pixels(self, height: int, width: int, name: str) -> None:
        """Refuse an image above ``limits.max_image_pixels`` (413)."""
        if height * width > self.limits.max_image_pixels:
            raise BadRequest(
                f'{name} has {height}x{width} = {height * width} pixels, more than the '
                f'server allows ({self.limits.max_image_pixels}; mmsam serve '
                '--max-image-pixels)',
                413,
            )

    def display(self, name: str) -> Tuple[bytes, str]:
        """The bytes a browser shows with exactly :meth:`load`'s pixels, and their type.

        JPEG, PNG and WebP files without an EXIF rotation and in 8-bit modes are sent as
        they are; anything else (16-bit, TIFF, rotated photos, ...) is re-encoded as PNG
        from :meth:`load`'s pixels, so that click coordinates are the model's.
        """
        path = self.path(name)
        with Image.open(path) as img:
            kind = _BROWSER_FORMATS.get(img.format or '')
            plain = img.mode in _BROWSER_MODES and img.getexif().get(_EXIF_ORIENTATION, 1) == 1
        if kind and plain:
            with open(path, 'rb') as f:
                return f.read(), kind
        out = io.BytesIO()
        Image.fromarray(self.load(name)).save(out, format='PNG')
        return out.getvalue(), 'image/png'

    def save_upload(self, filename: str, content: bytes) -> str:
        """Store an uploaded image in the folder's ``uploads/`` and return its name.

        The file must decode as an image (PIL, not only by its suffix) within the pixel
        bound; an existing file is never replaced (a number is added to the name).

        Raises:
            BadRequest: not an image (415), too big (413) or a bad file name (400).
        """
        base = osp.basename(str(filename or '').replace('\\', '/')).strip()
        stem, suffix = osp.splitext(base)
        if not stem or stem.startswith('.') or suffix.lower() not in IMAGE_SUFFIXES:
            raise BadRequest(
                f'upload {filename!r}: not an image file name (expected one of '
                f'{", ".join(IMAGE_SUFFIXES)})',
                415,
            )
        if len(content) > self.limits.max_request_bytes:
            raise BadRequest(f'upload {base} is larger than the server allows', 413)
        try:
            with Image.open(io.BytesIO(content)) as img:
                self.check_pixels(img.height, img.width, base)
                img.verify()
        except BadRequest:
            raise
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise BadRequest(f'upload {base} is not an image ({err})', 415) from err
        except Image.DecompressionBombError as err:
            raise BadRequest(f'upload {base} has too many pixels', 413) from err
        folder = osp.join(self.root, 'uploads')
        os.makedirs(folder, exist_ok=True)
        safe = ''.join(c if c.isalnum() or c in '-_' else '_' for c in stem)[:100] or 'image'
        tmp = osp.join(folder, f'.upload-{os.getpid()}-{id(content)}.tmp')
        with open(tmp, 'wb') as f:  # hidden: never listed while it is written
            f.write(content)
        name: Optional[str] = None
        try:
            for i in range(10_000):
                candidate = f'{safe}{"" if i == 0 else f"_{i}"}{suffix.lower()}'
                try:
                    os.link(tmp, osp.join(folder, candidate))  # whole, and never replaces
                except FileExistsError:
                    continue
                name = f'uploads/{candidate}'
                break
        finally:
            os.remove(tmp)
        if name is None:
            raise BadRequest(f'upload {base}: too many files of that name', 409)
        return name
