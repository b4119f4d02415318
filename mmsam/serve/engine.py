"""The model side of the server: embeddings (once per image), the ONNX decoder, decoding, AMG.

* Embeddings live in an embedding store (:mod:`mmsam.apis.embedding_store`, the
  layout ``mmsam embed`` writes): a store given with ``--store`` (e.g. written
  beforehand by ``mmsam embed FOLDER --out STORE``) is read, and each image missing
  from it is encoded once and added, with the same resume key as ``mmsam embed``
  (``.resume/<image>.key``: encoder digest, dtype, file size and time stamp), so an
  edited image is encoded again and ``mmsam embed`` resumes from the server's store.
  A store of another image encoder is refused when the server starts.
* The decoder graph (:func:`mmsam.deploy.export_decoder`) is exported once per decoder
  weights and image size into ``decoders/`` and served to the page, whose
  onnxruntime-web runs it per click (the page computes the stability scores from the
  logits as it thresholds them: a quarter less graph work than the graph's own).
* :meth:`ServeModel.decode` is the same decoding on the server (``SAMPredictor`` on the
  stored embedding), for browsers that cannot run the graph.
* :meth:`ServeModel.amg` runs :class:`~mmsam.apis.AutomaticMaskGenerator` on the
  stored embedding (no second encoder pass without crop layers).

The model is used by one request at a time (a lock); the server runs these calls in
worker threads so that the page stays responsive while an image is encoded.
"""

import os
import os.path as osp
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..apis.embedding_store import (
    EmbeddingStore,
    EmbeddingStoreError,
    build_index,
    embedding_path,
    encoder_digest,
    read_embedding,
    resume_key,
    resume_key_path,
    write_embedding,
)
from ..apis.predictor import SAMPredictor
from ..models.utils.embedding_cache import weights_digest
from ..structures.mask_postprocess import calculate_stability_score
from ..structures.rle import mask_to_rle
from ..utils.atomic_file import atomic_write
from ..utils.fingerprints import settings_key
from .folder import BadRequest

#: Bumped when the exported decoder graph changes for the same weights.
DECODER_GRAPH_VERSION = 2
STABILITY_OFFSET = 1.0


@dataclass(frozen=True)
class Embedding:
    """One image's embedding as the page and the decoder use it.

    Attributes:
        array (np.ndarray): ``(1, C, E, E)`` float32.
        original_size (tuple[int, int]): ``(H, W)``.
        input_size (tuple[int, int]): ``(h, w)`` in the model's input frame.
    """

    array: np.ndarray
    original_size: Tuple[int, int]
    input_size: Tuple[int, int]


class ServeModel:
    """A SAM model with its embedding store and exported decoder, for the server.

    Args:
        model (mmsam.models.SAM): The model (put in eval mode).
        model_name (str): The name written into the store.
        work_dir (str): The server's work folder (``decoders/``, and the default
            store ``embeddings/<encoder digest>/``).
        store (str, optional): An embedding store folder to read and add to.
        embedding_dtype (str): ``'float16'`` (half the disk) or ``'float32'``, for a new
            store (an existing store keeps the dtype it has).
        amg_options (dict, optional): :class:`~mmsam.apis.AutomaticMaskGenerator`
            arguments for :meth:`amg`.

    Raises:
        EmbeddingStoreError: ``store`` holds another encoder's embeddings.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        model_name: str,
        work_dir: str,
        store: Optional[str] = None,
        embedding_dtype: str = 'float16',
        amg_options: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.model = model.eval()
        self.model_name = model_name
        self.predictor = SAMPredictor(self.model)
        self.encoder_sha256 = encoder_digest(self.model)
        self.store_dir = store or osp.join(work_dir, 'embeddings', self.encoder_sha256[:16])
        self.dtype = embedding_dtype
        self.decoder_dir = osp.join(work_dir, 'decoders')
        self.amg_options = dict(amg_options or {})
        self._model_lock = threading.Lock()
        self._image_locks: Dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_lock = threading.Lock()
        self._decoder_path: Optional[str] = None
        existing = EmbeddingStore.existing(self.store_dir)
        if existing is not None:
            existing.check_model(encoder_sha256=self.encoder_sha256)
            self.dtype = existing.index['dtype']  # a store holds one dtype: keep its own

    # ------------------------------------------------------------------ facts
    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    @property
    def mask_threshold(self) -> float:
        return float(self.model.mask_threshold)

    def _lock_for(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._image_locks[name]

    # ------------------------------------------------------------------ embeddings
    def _stored(self, name: str, path: str, size: Tuple[int, int]) -> Optional[Embedding]:
        """The store's embedding of the image if it is of this encoder and this file."""
        file = embedding_path(self.store_dir, name)
        if not osp.isfile(file):
            return None
        try:
            with open(resume_key_path(self.store_dir, name), encoding='utf-8') as f:
                key = f.read()
        except OSError:
            key = None  # a store written elsewhere: trusted when encoder and size agree
        if key is not None and key != resume_key(self.encoder_sha256, key.split(' ')[1], path):
            return None  # the image file changed since
        stored = read_embedding(file)
        if stored.meta.get('encoder_sha256') != self.encoder_sha256:
            raise EmbeddingStoreError(
                f'{file} was written by another image encoder than this model: give '
                'another --store or remove the file'
            )
        if tuple(stored.original_size) != tuple(size):
            return None
        return Embedding(stored.embedding.astype(np.float32), size, stored.input_size)

    def embedding(self, name: str, path: str, size: Tuple[int, int], load) -> Embedding:
        """An image's embedding: from the store, or encoded once and added to it.

        Args:
            name (str): The image name (relative path).
            path (str): Its file.
            size (tuple[int, int]): ``(H, W)`` of its pixels (as ``load`` gives them).
            load (Callable[[], np.ndarray]): Reads its ``(H, W, 3)`` RGB pixels.

        Returns:
            Embedding: float32, with the sizes.
        """
        with self._lock_for(name):
            try:
                stored = self._stored(name, path, tuple(size))
            except (OSError, ValueError):
                stored = None  # unreadable or another encoder's file: encoded again
            if stored is not None:
                return stored
            rgb = load()
            with self._model_lock:
                self.predictor.set_image(rgb)
                array = self.predictor.get_image_embedding().float().cpu().numpy()
                original, input_size = self.predictor.original_size, self.predictor.input_size
            write_embedding(
                self.store_dir,
                name,
                array,
                original,
                input_size,
                self.image_size,
                self.model_name,
                self.encoder_sha256,
                self.dtype,
            )
            with atomic_write(resume_key_path(self.store_dir, name), 'w') as f:
                f.write(resume_key(self.encoder_sha256, self.dtype, path))
            build_index(self.store_dir)
            # what the store gives back (float16 rounding included), as on a later request
            return self._stored(name, path, original) or Embedding(array, original, input_size)

    # ------------------------------------------------------------------ the decoder graph
    def decoder_file(self) -> str:
        """The exported decoder graph (exported on the first call, then reused).

        The file name is a hash of the prompt encoder's and mask decoder's weights, the
        input size, the mask threshold and the graph version, so another model (or a
        fine-tuned decoder) gets its own file.
        """
        with self._model_lock:
            if self._decoder_path and osp.isfile(self._decoder_path):
                return self._decoder_path
            from ..deploy import export_decoder

            parts = torch.nn.ModuleList([self.model.prompt_encoder, self.model.mask_decoder])
            key = settings_key(
                weights=weights_digest(parts),
                image_size=self.image_size,
                mask_threshold=self.mask_threshold,
                graph=DECODER_GRAPH_VERSION,
            )
            path = osp.join(self.decoder_dir, f'decoder-{key}.onnx')
            if not osp.isfile(path):
                os.makedirs(self.decoder_dir, exist_ok=True)
                export_decoder(self.model, path)
            self._decoder_path = path
            return path

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        embedding: Embedding,
        points: Sequence[Sequence[float]] = (),
        labels: Sequence[int] = (),
        box: Optional[Sequence[float]] = None,
    ) -> Dict[str, Any]:
        """The three multimask candidates of a prompt (``SAMPredictor.predict``).

        Args:
            embedding (Embedding): The image's embedding.
            points (Sequence): ``(P, 2)`` pixel ``(x, y)``.
            labels (Sequence[int]): ``(P,)`` 1 positive, 0 negative.
            box (Sequence[float], optional): XYXY pixels.

        Returns:
            dict: ``masks`` (3 uncompressed RLEs, column-major counts), ``scores`` (3
            predicted IoUs) and ``stability_scores`` (3, offset 1.0 on the logits).
        """
        if not len(points) and box is None:
            raise BadRequest('give at least one point or a box')
        try:
            coords = np.asarray(points, dtype=np.float64).reshape(-1, 2) if len(points) else None
            point_labels = np.asarray(labels, dtype=np.int64) if len(points) else None
            box_arr = None if box is None else np.asarray(box, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise BadRequest(f'points, labels and box must be numbers: {err}') from err
        if coords is not None and (
            point_labels.shape != (len(coords),) or not np.isin(point_labels, (0, 1)).all()
        ):
            raise BadRequest('labels must be one 0 or 1 per point')
        with self._model_lock:
            self.predictor.set_image_embedding(
                embedding.array, embedding.original_size, embedding.input_size
            )
            try:
                logits, scores, _ = self.predictor.predict(
                    coords, point_labels, box_arr, multimask_output=True, return_logits=True
                )
            except ValueError as err:
                raise BadRequest(str(err)) from err
        logits_t = torch.from_numpy(logits)
        stability = calculate_stability_score(logits_t, self.mask_threshold, STABILITY_OFFSET)
        masks = logits_t > self.mask_threshold
        return {
            'masks': mask_to_rle(masks),
            'scores': [float(s) for s in scores],
            # NaN (both thresholded masks empty) is not JSON: an empty mask is not stable
            'stability_scores': [float(s) if s == s else 0.0 for s in stability.tolist()],
        }

    def amg(self, rgb: np.ndarray, embedding: Embedding) -> List[Dict[str, Any]]:
        """Every mask of the image (:class:`~mmsam.apis.AutomaticMaskGenerator` records,
        COCO RLE), decoded from the stored embedding when there are no crop layers."""
        from ..apis.batch_predictor import ImageEmbedding
        from ..apis.mask_generator import AutomaticMaskGenerator

        with self._model_lock:
            generator = AutomaticMaskGenerator(
                self.predictor, output_mode='coco_rle', **self.amg_options
            )
            if generator.crop_n_layers:
                return generator.generate(rgb)
            stored = ImageEmbedding(
                torch.from_numpy(embedding.array).to(self.predictor.device),
                embedding.original_size,
                embedding.input_size,
            )
            return generator._records(rgb, [stored])
