"""The image a predictor has set: its embedding and the sizes that place prompts and masks.

:class:`ImageState` is the part :class:`mmsam.apis.SAMPredictor` (torch) and
:class:`mmsam.deploy.ONNXPredictor` (numpy, no torch) share: forgetting and storing the
embedding, checking an embedding given from elsewhere against the image's size, and
turning a user's prompts into checked input-frame arrays with
:func:`~mmsam.structures.prompts.prepare_prompts`. Works without torch.
"""

from typing import Any, Optional, Sequence, Tuple

from .prompts import PromptArrays, prepare_prompts
from .transforms import get_preprocess_shape


class ImageState:
    """The set image of a predictor (a mixin: the predictor defines the two sizes).

    Attributes:
        image_size (int): Side ``S`` of the model input (the predictor's).
        mask_input_size (tuple[int, int]): ``(4E, 4E)`` (the predictor's).
        is_image_set (bool): Whether an image (or embedding) is set.
        features: The embedding ``(1, 256, E, E)`` (a tensor or an array).
        original_size (tuple[int, int] | None): ``(H, W)`` of the set image.
        input_size (tuple[int, int] | None): ``(h, w)`` after resizing the longest
            side to ``image_size``.
    """

    image_size: int
    mask_input_size: Tuple[int, int]

    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self.is_image_set = False
        self.features: Any = None
        self.original_size: Optional[Tuple[int, int]] = None
        self.input_size: Optional[Tuple[int, int]] = None

    def _store(self, features: Any, original_size: Sequence[int], input_size: Sequence[int]):
        self.features = features
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.is_image_set = True

    def _check_image_set(self) -> None:
        if not self.is_image_set:
            raise RuntimeError(
                'no image is set: call set_image(...) or set_image_embedding(...) first'
            )

    def get_image_embedding(self) -> Any:
        """The embedding of the set image, ``(1, 256, E, E)`` with ``E = S / 16``."""
        self._check_image_set()
        return self.features

    def _embedding_input_size(
        self,
        shape: Sequence[int],
        expected_shape: Sequence[int],
        original_size: Sequence[int],
        input_size: Optional[Sequence[int]],
    ) -> Tuple[int, int]:
        """Check an embedding given by :meth:`set_image_embedding` against its image.

        Args:
            shape (tuple[int, ...]): The embedding's shape, ``(1, 256, E, E)``.
            expected_shape (tuple[int, ...]): The shape the model takes.
            original_size (tuple[int, int]): ``(H, W)`` of the image it came from.
            input_size (tuple[int, int], optional): ``(h, w)`` of the resized image.

        Returns:
            tuple[int, int]: ``(h, w)`` computed from ``original_size`` (equal to
            ``input_size`` when given).

        Raises:
            ValueError: A shape, an ``original_size`` or an ``input_size`` that does
                not fit.
        """
        if tuple(shape) != tuple(expected_shape):
            raise ValueError(
                f'embedding must have shape {tuple(expected_shape)} for this model, '
                f'got {tuple(shape)}'
            )
        if len(original_size) != 2:
            raise ValueError(f'original_size must be (H, W), got {original_size}')
        expected = get_preprocess_shape(
            int(original_size[0]), int(original_size[1]), self.image_size
        )
        if input_size is not None and tuple(int(s) for s in input_size) != expected:
            raise ValueError(
                f'input_size {tuple(input_size)} does not match original_size '
                f'{tuple(original_size)}: expected {expected}'
            )
        return expected

    def _prompt_arrays(
        self, point_coords: Any, point_labels: Any, box: Any, mask_input: Any, **options
    ) -> PromptArrays:
        """A user's prompts, checked and in the input frame of the set image.

        ``options`` go to :func:`~mmsam.structures.prompts.prepare_prompts`
        (``allow_batch``, ``binary_labels``).
        """
        return prepare_prompts(
            point_coords,
            point_labels,
            box,
            mask_input,
            original_size=self.original_size,
            image_size=self.image_size,
            mask_input_size=self.mask_input_size,
            **options,
        )
