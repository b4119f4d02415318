"""Many images at once: encode them in batches, then decode ragged prompts per image.

The image encoder is where SAM spends its time, and it takes a batch ``(B, 3, S, S)``;
the prompt decoder works on one image's embedding at a time. :func:`encode_images`
runs the encoder ``batch_size`` images at a time over any iterable of images (so a
folder is read lazily and memory is bounded by one batch), and
:class:`BatchSAMPredictor` decodes each image's own prompts (a different number of
points or boxes per image) with :class:`~mmsam.apis.SAMPredictor`'s rules. The
outputs equal one-image-at-a-time prediction up to the float rounding of a batched
matrix product.
"""

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..structures.transforms import image_to_rgb_uint8
from .predictor import ArrayLike, SAMPredictor


@dataclass(frozen=True)
class ImageEmbedding:
    """The encoder's output for one image, with the sizes needed to decode it.

    Attributes:
        embedding (Tensor): ``(1, 256, E, E)`` float32.
        original_size (tuple[int, int]): ``(H, W)`` of the image.
        input_size (tuple[int, int]): ``(h, w)`` after resizing the longest side to
            the model's ``image_size``.
    """

    embedding: torch.Tensor
    original_size: Tuple[int, int]
    input_size: Tuple[int, int]


def check_batch_size(batch_size: int) -> int:
    if int(batch_size) != batch_size or int(batch_size) < 1:
        raise ValueError(f'batch_size must be an integer >= 1, got {batch_size!r}')
    return int(batch_size)


@torch.no_grad()
def encode_images(
    model: torch.nn.Module,
    images: Iterable[Union[np.ndarray, torch.Tensor]],
    batch_size: int = 1,
    image_format: str = 'RGB',
) -> Iterator[ImageEmbedding]:
    """Embeddings of images, computed ``batch_size`` at a time, in the images' order.

    A generator: images are read from ``images`` only as each batch is formed, so at
    most ``batch_size`` images and their inputs are held at once.

    Args:
        model (mmsam.models.SAM): The model (its ``data_preprocessor`` and
            ``extract_feat``); put in eval mode by the caller.
        images (Iterable[np.ndarray | Tensor]): ``(H, W, 3)`` uint8 images, any sizes.
        batch_size (int): Images per encoder call (memory vs. speed).
        image_format (str): ``'RGB'`` or ``'BGR'``.

    Yields:
        ImageEmbedding: one per image; ``embedding`` is ``(1, 256, E, E)`` float32 on
        the model's device.
    """
    batch_size = check_batch_size(batch_size)
    device = next(model.parameters()).device
    preprocess = model.data_preprocessor.preprocess_image
    pending: List[Tuple[torch.Tensor, Tuple[int, int], Tuple[int, int]]] = []

    def flush() -> Iterator[ImageEmbedding]:
        inputs = torch.stack([p[0] for p in pending]).to(device)
        features = model.extract_feat(inputs)[0]
        for i, (_, original_size, input_size) in enumerate(pending):
            yield ImageEmbedding(features[i : i + 1], original_size, input_size)
        pending.clear()

    for image in images:
        rgb = image_to_rgb_uint8(image, image_format)
        chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        inputs, input_size = preprocess(chw)
        original_size = (int(rgb.shape[0]), int(rgb.shape[1]))
        pending.append((inputs, original_size, (int(input_size[0]), int(input_size[1]))))
        if len(pending) == batch_size:
            yield from flush()
    if pending:
        yield from flush()


PerImage = Optional[Sequence[Optional[ArrayLike]]]


class BatchSAMPredictor:
    """Set several images at once (batched encoder), then prompt each image separately.

    Args:
        model_or_predictor (mmsam.models.SAM | SAMPredictor): The model, or a
            predictor around it (whose checks and decoding are reused).
        batch_size (int): Images per encoder call. Results do not depend on it
            beyond float rounding; memory grows with it.

    Attributes:
        embeddings (list[ImageEmbedding]): One per set image, in order.
    """

    def __init__(
        self, model_or_predictor: Union[torch.nn.Module, SAMPredictor], batch_size: int = 4
    ) -> None:
        if isinstance(model_or_predictor, SAMPredictor):
            self.predictor = model_or_predictor
        else:
            self.predictor = SAMPredictor(model_or_predictor)
        self.batch_size = check_batch_size(batch_size)
        self.embeddings: List[ImageEmbedding] = []

    @property
    def model(self) -> torch.nn.Module:
        """The SAM model."""
        return self.predictor.model

    @property
    def num_images(self) -> int:
        """How many images are set."""
        return len(self.embeddings)

    def set_images(
        self, images: Sequence[Union[np.ndarray, torch.Tensor]], image_format: str = 'RGB'
    ) -> None:
        """Compute the embeddings of a list of images, ``batch_size`` at a time.

        Args:
            images (Sequence[np.ndarray | Tensor]): ``(H_i, W_i, 3)`` uint8 images of
                any sizes.
            image_format (str): ``'RGB'`` or ``'BGR'``.
        """
        self.embeddings = list(encode_images(self.model, images, self.batch_size, image_format))

    def set_image_embeddings(self, embeddings: Sequence[ImageEmbedding]) -> None:
        """Use embeddings computed elsewhere (e.g. :func:`encode_images` or a store).

        Args:
            embeddings (Sequence[ImageEmbedding]): One per image.
        """
        for i, item in enumerate(embeddings):
            if not isinstance(item, ImageEmbedding):
                raise TypeError(
                    f'embeddings[{i}] must be an ImageEmbedding, got {type(item).__name__}'
                )
        self.embeddings = list(embeddings)

    def reset_images(self) -> None:
        """Forget the set images."""
        self.embeddings = []
        self.predictor.reset_image()

    def _per_image(self, name: str, values: PerImage) -> List[Optional[ArrayLike]]:
        if values is None:
            return [None] * self.num_images
        if isinstance(values, (np.ndarray, torch.Tensor)):
            got = f'an array of shape {tuple(values.shape)}'
        elif len(values) != self.num_images:
            got = f'{len(values)} entries'
        else:
            return list(values)
        raise ValueError(
            f'{name} must be a list with one entry (or None) per set image '
            f'({self.num_images}), got {got}'
        )

    def predict_batch(
        self,
        point_coords: PerImage = None,
        point_labels: PerImage = None,
        boxes: PerImage = None,
        mask_input: PerImage = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Masks for each image's own prompts, in original-image pixels.

        Every argument is a list with one entry per set image (or ``None`` for no such
        prompt anywhere); entry ``i`` follows :meth:`SAMPredictor.predict`: one prompt
        (``(P, 2)`` points, a ``(4,)`` box) or ``N_i`` prompts (``(N_i, P, 2)``,
        ``(N_i, 4)``), with ``N_i`` free to differ between images (``N_i = 0`` gives
        empty arrays).

        Args:
            point_coords (list, optional): Per image, point ``(x, y)`` pixels.
            point_labels (list, optional): Per image, labels (1 foreground, 0 background).
            boxes (list, optional): Per image, XYXY box(es).
            mask_input (list, optional): Per image, low-resolution logits.
            multimask_output (bool): Three masks per prompt, or one.
            return_logits (bool): Float logits instead of boolean masks.

        Returns:
            list[tuple[np.ndarray, np.ndarray, np.ndarray]]: per image, what
            :meth:`SAMPredictor.predict` returns: masks ``([N_i,] C, H_i, W_i)``, scores
            ``([N_i,] C)`` and low-resolution logits ``([N_i,] C, 4E, 4E)``.
        """
        if not self.embeddings:
            raise RuntimeError('no images are set: call set_images(...) before predict_batch()')
        prompts = zip(
            self._per_image('point_coords', point_coords),
            self._per_image('point_labels', point_labels),
            self._per_image('boxes', boxes),
            self._per_image('mask_input', mask_input),
        )
        results = []
        for i, (item, (coords, labels, box, masks)) in enumerate(zip(self.embeddings, prompts)):
            self.predictor.set_image_embedding(item.embedding, item.original_size, item.input_size)
            try:
                results.append(
                    self.predictor.predict(
                        coords, labels, box, masks, multimask_output, return_logits
                    )
                )
            except ValueError as err:
                raise ValueError(f'image {i}: {err}') from err
        self.predictor.reset_image()
        return results
