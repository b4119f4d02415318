"""Serve SAM from ONNX files with numpy and onnxruntime only (no torch at run time).

The interface is the predictor's (``set_image``, ``predict``, ...); images and
prompts are prepared with :mod:`mmsam.structures.transforms` and
:mod:`mmsam.structures.prompts` (the predictor's rules), the normalization
and the sizes are read from the graphs' metadata (written by
:mod:`mmsam.deploy.export`).
"""

import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..structures.image_state import ImageState
from ..structures.transforms import get_preprocess_shape, image_to_rgb_uint8, resize_longest_side
from . import graph_spec as meta
from .onnx_session import CheckedSession

PathLike = Union[str, os.PathLike]


def _graph_metadata(session: CheckedSession, kind: str) -> dict:
    values = meta.decode_metadata(session.metadata)
    if values.get(meta.GRAPH) != kind:
        found = values.get(meta.GRAPH, 'no mmsam metadata')
        raise ValueError(
            f'{session.path} is not an mmsam {kind} graph ({found}); export one with '
            'tools/deployment/export_onnx.py'
        )
    return values


class ONNXPredictor(ImageState):
    """Compute an image embedding once, then decode masks for many prompts, in onnxruntime.

    The counterpart of :class:`mmsam.apis.SAMPredictor` for graphs written by
    ``tools/deployment/export_onnx.py``: one prompt per call (points, a box, a
    mask input, any subset) in original-image pixels.

    Args:
        decoder (str | os.PathLike): The decoder graph (``--output``).
        encoder (str | os.PathLike, optional): The encoder graph
            (``--encoder-output``); needed by :meth:`set_image` only, not when
            embeddings come from :meth:`set_image_embedding`.
        providers (Sequence[str], optional): onnxruntime execution providers.
            Defaults to ``['CPUExecutionProvider']``.

    Attributes:
        image_size (int): Side ``S`` of the model input.
        mask_threshold (float): Logit threshold of the masks.
        embedding_shape (tuple[int, ...]): ``(1, 256, E, E)``.
        mask_input_size (tuple[int, int]): ``(4E, 4E)``.
    """

    def __init__(
        self,
        decoder: PathLike,
        encoder: Optional[PathLike] = None,
        providers: Optional[Sequence[str]] = None,
    ) -> None:
        self.decoder = CheckedSession(decoder, providers)
        info = _graph_metadata(self.decoder, 'decoder')
        self.image_size = int(info[meta.IMAGE_SIZE])
        self.mask_threshold = float(info[meta.MASK_THRESHOLD])
        self.num_mask_tokens = int(info[meta.NUM_MASK_TOKENS])
        self.embedding_shape = tuple(self.decoder.input_shapes['image_embeddings'])
        self.mask_input_size = tuple(self.decoder.input_shapes['mask_input'][2:])
        self.encoder = None
        if encoder is not None:
            self.encoder = CheckedSession(encoder, providers)
            enc = _graph_metadata(self.encoder, 'encoder')
            if int(enc[meta.IMAGE_SIZE]) != self.image_size:
                raise ValueError(
                    f'encoder {self.encoder.path} takes {enc[meta.IMAGE_SIZE]} px inputs but '
                    f'decoder {self.decoder.path} was exported for {self.image_size}'
                )
            self.encoder_input_size = int(enc.get(meta.ENCODER_INPUT_SIZE, self.image_size))
            self.pixel_mean = np.asarray(enc[meta.PIXEL_MEAN], np.float32).reshape(3, 1, 1)
            self.pixel_std = np.asarray(enc[meta.PIXEL_STD], np.float32).reshape(3, 1, 1)
        self.reset_image()

    # ------------------------------------------------------------------ image
    def preprocess(self, image: np.ndarray) -> Tuple[np.ndarray, Tuple[int, int]]:
        """Resize, normalize and pad an RGB uint8 ``(H, W, 3)`` image.

        Returns:
            tuple: the encoder input ``(1, 3, S', S')`` float32 (``S'``: the encoder's input
            side, ``S`` or EfficientViT-SAM L's 512) and ``(h, w)`` in the ``S`` frame.
        """
        if self.encoder is None:
            raise RuntimeError('preprocessing needs the encoder graph: pass encoder=... ')
        side = self.encoder_input_size
        resized = resize_longest_side(image, side)
        h, w = resized.shape[:2]
        chw = resized.transpose(2, 0, 1).astype(np.float32)
        normalized = (chw - self.pixel_mean) / self.pixel_std
        padded = np.zeros((1, 3, side, side), np.float32)
        padded[0, :, :h, :w] = normalized
        if side != self.image_size:
            return padded, get_preprocess_shape(image.shape[0], image.shape[1], self.image_size)
        return padded, (h, w)

    def set_image(self, image: np.ndarray, image_format: str = 'RGB') -> None:
        """Compute the embedding of an ``(H, W, 3)`` uint8 image (``'RGB'`` or ``'BGR'``)."""
        if self.encoder is None:
            raise RuntimeError(
                'set_image needs the encoder graph: ONNXPredictor(decoder, encoder=...); '
                'or give a precomputed embedding to set_image_embedding'
            )
        rgb = image_to_rgb_uint8(image, image_format)
        inputs, input_size = self.preprocess(rgb)
        (features,) = self.encoder.run({meta.ENCODER_INPUT_NAME: inputs}).values()
        self.reset_image()
        self._store(features, rgb.shape[:2], input_size)

    def set_image_embedding(
        self,
        embedding: np.ndarray,
        original_size: Sequence[int],
        input_size: Optional[Sequence[int]] = None,
    ) -> None:
        """Use an embedding computed elsewhere (e.g. cached by a server).

        Args:
            embedding (np.ndarray): ``(1, 256, E, E)`` or ``(256, E, E)``, floating point.
            original_size (tuple[int, int]): ``(H, W)`` of the image it came from.
            input_size (tuple[int, int], optional): ``(h, w)`` of the resized image;
                computed from ``original_size`` when omitted and checked when given.
        """
        array = np.asarray(embedding)
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f'embedding must be a floating-point array, got dtype {array.dtype}')
        if array.ndim == 3:
            array = array[None]
        expected = self._embedding_input_size(
            array.shape, self.embedding_shape, original_size, input_size
        )
        self.reset_image()
        self._store(np.ascontiguousarray(array, np.float32), original_size, expected)

    # ------------------------------------------------------------------ prompts
    def _graph_prompts(self, point_coords, point_labels, box, mask_input):
        """One checked prompt (:func:`~mmsam.structures.prompts.prepare_prompts`) as the
        decoder graph takes it: points and box corners ``(1, K, 2)`` with labels
        ``(1, K)`` (2 and 3 the box corners, -1 the padding point without a box), mask
        input ``(1, 1, 4E, 4E)`` and ``has_mask_input (1,)``, all float32."""
        prompts = self._prompt_arrays(
            point_coords, point_labels, box, mask_input, allow_batch=False, binary_labels=True
        )
        coords, labels = np.zeros((0, 2)), np.zeros((0,))
        if prompts.point_coords is not None:
            coords, labels = prompts.point_coords[0], prompts.point_labels[0]
        if prompts.boxes is not None:
            coords = np.concatenate([coords, prompts.boxes.reshape(2, 2)])
            labels = np.concatenate([labels, [2.0, 3.0]])
        elif prompts.point_coords is not None:
            coords = np.concatenate([coords, np.zeros((1, 2))])  # the padding point
            labels = np.concatenate([labels, [-1.0]])
        shape = (1, 1, *self.mask_input_size)
        if prompts.mask_inputs is None:
            mask, has_mask = np.zeros(shape, np.float32), np.zeros(1, np.float32)
        else:
            mask, has_mask = prompts.mask_inputs.astype(np.float32), np.ones(1, np.float32)
        return coords[None].astype(np.float32), labels[None].astype(np.float32), mask, has_mask

    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt in original-image pixels.

        Args:
            point_coords (array-like, optional): ``(P, 2)`` ``(x, y)`` pixels.
            point_labels (array-like, optional): ``(P,)``, 1 foreground, 0 background.
            box (array-like, optional): ``(4,)`` XYXY.
            mask_input (array-like, optional): ``(1, 4E, 4E)`` low-resolution logits
                from a previous call.
            multimask_output (bool): Three masks (``C = 3``), or one. A decoder
                exported with ``--return-single-mask`` always gives its one mask.
            return_logits (bool): Return float32 logits instead of boolean masks.

        Returns:
            tuple[np.ndarray, np.ndarray, np.ndarray]: masks ``(C, H, W)``, scores
            ``(C,)`` and low-resolution logits ``(C, 4E, 4E)``.
        """
        self._check_image_set()
        coords, labels, mask, has_mask = self._graph_prompts(
            point_coords, point_labels, box, mask_input
        )
        outputs = self.decoder.run(
            {
                'image_embeddings': self.features,
                'point_coords': coords,
                'point_labels': labels,
                'mask_input': mask,
                'has_mask_input': has_mask,
                'orig_im_size': np.asarray(self.original_size, np.float32),
            }
        )
        masks, scores = outputs['masks'][0], outputs['iou_predictions'][0]
        low_res = outputs['low_res_masks'][0]
        if masks.shape[0] == self.num_mask_tokens:
            keep = slice(1, None) if multimask_output else slice(0, 1)
            masks, scores, low_res = masks[keep], scores[keep], low_res[keep]
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, scores, low_res
