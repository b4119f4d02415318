"""A folder of image embeddings that predictors load instead of running the encoder.

Layout of a store ``STORE/``::

    index.json                                  what the store holds (below)
    embeddings/<image name>.safetensors         one file per image

Each ``.safetensors`` file holds one tensor, ``image_embedding`` ``(C, E, E)``
(float16 by default, or float32), and string metadata: ``format``, ``version``,
``image`` (the image's name: its path relative to the embedded folder, ``/``
separated), ``original_size`` and ``input_size`` (``"H,W"``), ``image_size`` (the
model input side ``S``), ``model`` (the name the user gave the model) and
``encoder_sha256`` (:func:`encoder_digest`: SHA-256 of the image encoder's state dict,
the same key as the fine-tuning embedding cache's
:func:`mmsam.models.utils.embedding_cache.weights_digest`). Each file describes itself,
so ``index.json`` is only a table of contents: it is rebuilt from the files
(:func:`build_index`), sorted by image name, and so comes out byte for byte the same
however many processes wrote the files and in which order.

Why safetensors (one file per image) rather than the alternatives:

* readable without mmsam or torch: ``safetensors.numpy.load_file(path)`` (or any of the
  Rust/JS/C readers), and the metadata is a plain JSON header that even a JSON parser
  can read after its 8-byte length;
* safe: no pickle (``torch.save`` files and ``.npz`` with object arrays can run code
  when loaded); ``.npz`` also has no place for string metadata other than extra arrays;
* one file per image is what sharded jobs need: each rank writes its own files
  atomically (:mod:`mmsam.utils.atomic_file`), an interrupted run resumes by skipping
  the files that exist, and nothing is appended to a shared file (zarr or HDF5 would
  need a lock or a merge pass, and zarr is another dependency);
* the files are written by :func:`_safetensors_bytes` (the format, with the metadata
  in sorted order: the same embedding gives the same bytes in any process);
* float16 halves the size (2 MiB per 1024 px SAM image instead of 4 MiB); masks
  decoded from it differ from the float32 embedding's only at pixels whose logit is
  near the threshold (tests/apis/test_embedding_store.py states the tolerance).

Reading needs only numpy and safetensors, so the ONNX predictor can use a store
without torch (``python -c "from mmsam.apis import EmbeddingStore"`` and reading a store
import neither torch nor :mod:`mmsam.utils`, whose package imports torch); writing and the
weights check of a torch model import them lazily.
"""

import json
import os
import os.path as osp
import struct
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

FORMAT = 'mmsam.embedding_store'
VERSION = 1
INDEX_FILE = 'index.json'
EMBEDDING_DIR = 'embeddings'
SUFFIX = '.safetensors'
TENSOR_NAME = 'image_embedding'
DTYPES = ('float16', 'float32')
#: metadata every embedding file carries, and that the whole store shares
STORE_KEYS = ('model', 'encoder_sha256', 'dtype', 'image_size', 'embedding_shape')


class EmbeddingStoreError(ValueError):
    """A store that cannot be read or does not fit the model (the message says why)."""


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as err:  # pragma: no cover - an optional requirement
        raise ImportError(
            'the embedding store needs the safetensors package: '
            'pip install -r requirements/optional.txt'
        ) from err
    return safetensors.numpy


def encoder_digest(model: Any) -> str:
    """SHA-256 of a SAM model's image encoder weights (``model.backbone``).

    The embedding depends only on the encoder, so a store written with one model can
    serve any decoder on the same encoder (e.g. a fine-tuned decoder).
    """
    from ..models.utils.embedding_cache import weights_digest

    return weights_digest(model.backbone)


def _size(text: str) -> Tuple[int, int]:
    h, w = text.split(',')
    return int(h), int(w)


@dataclass(frozen=True)
class StoredEmbedding:
    """One image's entry of a store.

    Attributes:
        image (str): The image's name in the store.
        embedding (np.ndarray): ``(1, C, E, E)`` as stored (float16 or float32).
        original_size (tuple[int, int]): ``(H, W)`` of the image.
        input_size (tuple[int, int]): ``(h, w)`` of the resized image.
        meta (dict[str, str]): The file's metadata (``model``, ``encoder_sha256``, ...).
    """

    image: str
    embedding: np.ndarray
    original_size: Tuple[int, int]
    input_size: Tuple[int, int]
    meta: Dict[str, str]


def resume_key_path(root: str, image: str) -> str:
    """Where a store keeps an image's resume key: ``<root>/.resume/<image>.key``."""
    return osp.join(root, '.resume', image + '.key')


def resume_key(encoder_sha256: str, dtype: str, image_file: str) -> str:
    """The resume key of an image's embedding: the encoder's digest, the dtype and
    the image file's size and time stamp (written after the embedding, so it marks a
    finished image; an embedding whose key differs is made again)."""
    from ..utils.fingerprints import file_stamp

    size, mtime_ns = file_stamp(image_file)
    return f'{encoder_sha256} {dtype} {size} {mtime_ns}\n'


def embedding_path(root: str, image: str) -> str:
    """The file of an image's embedding in a store."""
    if image.startswith('/') or '..' in image.split('/'):
        raise ValueError(f'image names must be relative paths inside the folder, got {image!r}')
    return osp.join(root, EMBEDDING_DIR, *image.split('/')) + SUFFIX


def write_embedding(
    root: str,
    image: str,
    embedding: Any,
    original_size: Sequence[int],
    input_size: Sequence[int],
    image_size: int,
    model: str,
    encoder_sha256: str,
    dtype: str = 'float16',
) -> str:
    """Write one image's embedding file atomically (whole or not at all).

    Args:
        root (str): The store folder.
        image (str): The image's name (relative path, ``/`` separated).
        embedding (np.ndarray | Tensor): ``(1, C, E, E)`` or ``(C, E, E)``.
        original_size (tuple[int, int]): ``(H, W)`` of the image.
        input_size (tuple[int, int]): ``(h, w)`` of the resized image.
        image_size (int): The model input side ``S``.
        model (str): The model's name.
        encoder_sha256 (str): :func:`encoder_digest` of the model.
        dtype (str): ``'float16'`` or ``'float32'``.

    Returns:
        str: The path written.
    """
    if dtype not in DTYPES:
        raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
    if hasattr(embedding, 'detach'):
        embedding = embedding.detach().float().cpu().numpy()
    array = np.asarray(embedding)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f'embedding must have shape (1, C, E, E) or (C, E, E), got {array.shape}')
    array = np.ascontiguousarray(array, dtype=dtype)
    meta = {
        'format': FORMAT,
        'version': str(VERSION),
        'image': image,
        'original_size': f'{int(original_size[0])},{int(original_size[1])}',
        'input_size': f'{int(input_size[0])},{int(input_size[1])}',
        'image_size': str(int(image_size)),
        'model': str(model),
        'encoder_sha256': str(encoder_sha256),
        'dtype': dtype,
        'embedding_shape': ','.join(str(s) for s in array.shape),
    }
    from ..utils.atomic_file import atomic_write

    path = embedding_path(root, image)
    with atomic_write(path, 'wb') as f:
        f.write(_safetensors_bytes(TENSOR_NAME, array, meta))
    return path


def _safetensors_bytes(name: str, array: np.ndarray, meta: Dict[str, str]) -> bytes:
    """One tensor in the safetensors format, its metadata in sorted key order.

    safetensors' own writer (0.8) emits the metadata in a Rust hash map's order, which
    differs from process to process, so the same embedding written twice could differ in
    bytes; sharded jobs must equal a one-process run byte for byte. The layout is the
    format's: the header's length (8 bytes, little endian), the JSON header padded with
    spaces to a multiple of 8 bytes, then the little-endian data. The safetensors
    readers (all languages) read it; tests/apis/test_embedding_store.py reads it with
    ``safetensors.numpy.load_file``.
    """
    dtypes = {'float16': 'F16', 'float32': 'F32'}
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder('<')).tobytes()
    header = {
        '__metadata__': dict(sorted(meta.items())),
        name: {'dtype': dtypes[array.dtype.name], 'shape': list(array.shape)},
    }
    header[name]['data_offsets'] = [0, len(data)]
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)
    return struct.pack('<Q', len(text)) + text + data


def write_embeddings(
    model: Any,
    named_images: Iterable[Tuple[str, Any]],
    root: str,
    model_name: str,
    batch_size: int = 1,
    dtype: str = 'float16',
    encoder_sha256: Optional[str] = None,
) -> Iterator[str]:
    """Encode images ``batch_size`` at a time and write one embedding file per image.

    Args:
        model (mmsam.models.SAM): The model (eval mode).
        named_images (Iterable[tuple[str, np.ndarray]]): ``(name, (H, W, 3) uint8 RGB)``
            pairs, read lazily (a generator that loads files keeps one batch in memory).
        root (str): The store folder.
        model_name (str): The name written with each embedding.
        batch_size (int): Images per encoder call.
        dtype (str): ``'float16'`` or ``'float32'``.
        encoder_sha256 (str, optional): :func:`encoder_digest` of ``model`` if known.

    Yields:
        str: Each file once it is written, in the images' order (a generator: nothing
        is encoded until it is iterated).
    """
    from .batch_predictor import encode_images

    sha = encoder_sha256 or encoder_digest(model)
    names: List[str] = []

    def images():
        for name, image in named_images:
            names.append(name)
            yield image

    for i, item in enumerate(encode_images(model, images(), batch_size)):
        yield write_embedding(
            root,
            names[i],
            item.embedding,
            item.original_size,
            item.input_size,
            model.image_size,
            model_name,
            sha,
            dtype,
        )


def read_embedding_meta(path: str) -> Dict[str, str]:
    """The metadata of an embedding file (its header only; the tensor is not read).

    Raises:
        EmbeddingStoreError: the file is not an mmsam embedding file.
    """
    from safetensors import safe_open

    try:
        with safe_open(path, 'np') as f:
            meta = dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types
        raise EmbeddingStoreError(f'{path} is not a readable safetensors file: {err}') from err
    if meta.get('format') != FORMAT:
        raise EmbeddingStoreError(f'{path} is not an mmsam embedding file (no {FORMAT} metadata)')
    if int(meta.get('version', 0)) > VERSION:
        raise EmbeddingStoreError(
            f'{path} has store version {meta["version"]}; this mmsam reads up to {VERSION}'
        )
    return meta


def read_embedding(path: str) -> StoredEmbedding:
    """Read an embedding file (see the module docstring for its content)."""
    meta = read_embedding_meta(path)
    with open(path, 'rb') as f:
        tensors = _safetensors_numpy().load(f.read())
    array = tensors[TENSOR_NAME][None]
    return StoredEmbedding(
        meta['image'], array, _size(meta['original_size']), _size(meta['input_size']), meta
    )


def list_embedding_files(root: str) -> List[str]:
    """Every embedding file under ``root/embeddings``, sorted (temporary files skipped)."""
    found = []
    base = osp.join(root, EMBEDDING_DIR)
    for folder, _, files in os.walk(base):
        found += [osp.join(folder, f) for f in files if f.endswith(SUFFIX) and f[0] != '.']
    return sorted(found)


def build_index(root: str) -> Dict[str, Any]:
    """Write ``root/index.json`` from the embedding files, sorted by image name.

    Args:
        root (str): The store folder.

    Returns:
        dict: The index written.

    Raises:
        EmbeddingStoreError: no embedding file, or files of different models, dtypes or
            sizes (each names a file).
    """
    files = list_embedding_files(root)
    if not files:
        raise EmbeddingStoreError(f'{root} holds no embedding files under {EMBEDDING_DIR}/')
    shared: Optional[Dict[str, str]] = None
    first = None
    images = []
    for path in files:
        meta = read_embedding_meta(path)
        common = {k: meta[k] for k in STORE_KEYS}
        if shared is None:
            shared, first = common, path
        elif common != shared:
            key = next(k for k in STORE_KEYS if common[k] != shared[k])
            raise EmbeddingStoreError(
                f'{path} has {key}={common[key]!r} but {first} has {shared[key]!r}: '
                'a store holds the embeddings of one model; write them to another --out'
            )
        images.append(
            {
                'image': meta['image'],
                'file': osp.relpath(path, root).replace(os.sep, '/'),
                'original_size': list(_size(meta['original_size'])),
                'input_size': list(_size(meta['input_size'])),
            }
        )
    images.sort(key=lambda item: item['image'])
    index = {
        'format': FORMAT,
        'version': VERSION,
        'model': shared['model'],
        'encoder_sha256': shared['encoder_sha256'],
        'dtype': shared['dtype'],
        'image_size': int(shared['image_size']),
        'embedding_shape': [int(s) for s in shared['embedding_shape'].split(',')],
        'images': images,
    }
    from ..utils.atomic_file import atomic_write_json

    atomic_write_json(index, osp.join(root, INDEX_FILE))
    return index


class EmbeddingStore:
    """Read a store written by ``mmsam embed`` and set predictors' images from it.

    Args:
        root (str): The store folder (with ``index.json``).

    Raises:
        EmbeddingStoreError: the index is missing or not an mmsam store index.
    """

    def __init__(self, root: str) -> None:
        self.root = os.fspath(root)
        path = osp.join(self.root, INDEX_FILE)
        try:
            with open(path, encoding='utf-8') as f:
                index = json.load(f)
        except FileNotFoundError as err:
            raise EmbeddingStoreError(
                f'{path} does not exist: {self.root} is not an embedding store '
                '(write one with mmsam embed FOLDER --out STORE)'
            ) from err
        except (OSError, ValueError) as err:
            raise EmbeddingStoreError(f'{path} cannot be read: {err}') from err
        if not isinstance(index, dict) or index.get('format') != FORMAT:
            raise EmbeddingStoreError(f'{path} is not an mmsam embedding store index')
        self.index = index
        self._entries = {item['image']: item for item in index['images']}
        self._checked: Dict[int, str] = {}

    @classmethod
    def existing(cls, root: str) -> Optional['EmbeddingStore']:
        """The store in ``root`` if it has an index (``None`` for a new folder).

        Raises:
            EmbeddingStoreError: the index is there but not an mmsam store index.
        """
        return cls(root) if osp.isfile(osp.join(root, INDEX_FILE)) else None

    @property
    def model(self) -> str:
        """The name of the model that wrote the store."""
        return self.index['model']

    @property
    def encoder_sha256(self) -> str:
        """:func:`encoder_digest` of the model that wrote the store."""
        return self.index['encoder_sha256']

    @property
    def images(self) -> List[str]:
        """The image names, sorted."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, image: str) -> bool:
        return image in self._entries

    def get(self, image: str) -> StoredEmbedding:
        """The entry of one image (by its name in the store)."""
        entry = self._entries.get(image)
        if entry is None:
            raise KeyError(f'{image!r} is not in the embedding store {self.root}')
        stored = read_embedding(osp.join(self.root, *entry['file'].split('/')))
        if stored.meta['encoder_sha256'] != self.encoder_sha256:
            raise EmbeddingStoreError(
                f'{entry["file"]} was written by another encoder than {self.root}/{INDEX_FILE} '
                'says: rebuild the index (mmsam embed on the same folder resumes and rebuilds it)'
            )
        return stored

    def _check_image_size(self, owner: Any, what: str) -> None:
        size = int(getattr(owner, 'image_size', self.index['image_size']))
        if size != self.index['image_size']:
            raise EmbeddingStoreError(
                f'{self.root} holds embeddings of {self.index["image_size"]} px inputs '
                f'(model {self.model}); this {what} takes {size} px inputs'
            )

    def check_model(self, model: Any = None, encoder_sha256: Optional[str] = None) -> None:
        """Refuse a model whose image encoder is not the one that wrote the store.

        Args:
            model (mmsam.models.SAM, optional): A torch model (its encoder is hashed).
            encoder_sha256 (str, optional): Or the digest itself.

        Raises:
            EmbeddingStoreError: the digests differ (the message names both models).
        """
        if model is not None:
            key = id(model)
            if key not in self._checked:
                self._checked[key] = encoder_digest(model)
            encoder_sha256 = self._checked[key]
            self._check_image_size(model, 'model')
        if encoder_sha256 is not None and encoder_sha256 != self.encoder_sha256:
            raise EmbeddingStoreError(
                f'{self.root} holds embeddings of model {self.model} (encoder weights '
                f"sha256 {self.encoder_sha256[:12]}...), not of this model's encoder "
                f'({encoder_sha256[:12]}...): embed the images again with this model'
            )

    def set_image(
        self, predictor: Any, image: str, encoder_sha256: Optional[str] = None
    ) -> StoredEmbedding:
        """Set a predictor's image from the store instead of running the encoder.

        A :class:`~mmsam.apis.SAMPredictor`'s model is checked against the store's
        encoder digest (hashed once per model object: weights changed in place later
        are not seen). An :class:`~mmsam.deploy.ONNXPredictor` carries no torch
        weights: its embedding shape and input size are checked, and its digest too
        when ``encoder_sha256`` is given.

        Args:
            predictor (SAMPredictor | ONNXPredictor): Anything with
                ``set_image_embedding(embedding, original_size, input_size)``.
            image (str): The image's name in the store.
            encoder_sha256 (str, optional): The predictor's encoder digest, if known.

        Returns:
            StoredEmbedding: The entry that was set.
        """
        model = getattr(predictor, 'model', None)
        self._check_image_size(predictor, 'predictor')
        self.check_model(model, encoder_sha256)
        stored = self.get(image)
        predictor.set_image_embedding(stored.embedding, stored.original_size, stored.input_size)
        return stored
