"""Interactive prompting of an mmsam SAM on one image whose embedding is computed once."""

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..structures.image_state import ImageState
from ..structures.transforms import image_to_rgb_uint8

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


class SAMPredictor(ImageState):
    """Compute an image embedding once, then decode masks for many prompts.

    The counterpart of the official ``SamPredictor`` on an mmsam ``SAM``
    (``mmdet.registry.MODELS`` type ``SAM``): the same inputs give the same outputs.
    Image preprocessing is the model's own ``data_preprocessor.preprocess_image``
    and decoding is its ``predict_prompts`` / ``postprocess_masks``.

    Args:
        model (mmsam.models.SAM): The model; it is put in eval mode.

    Attributes:
        is_image_set (bool): Whether an image (or embedding) is set.
        original_size (tuple[int, int] | None): ``(H, W)`` of the set image.
        input_size (tuple[int, int] | None): ``(h, w)`` after resizing the longest
            side to the model's ``image_size``.
        features (Tensor | None): The embedding ``(1, 256, E, E)``.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        for attr in ('predict_prompts', 'postprocess_masks', 'extract_feat', 'data_preprocessor'):
            if not hasattr(model, attr):
                raise TypeError(
                    f'model must be an mmsam SAM (with {attr}), got {type(model).__name__}'
                )
        self.model = model.eval()
        self.reset_image()

    # ------------------------------------------------------------------ state
    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        """Side ``S`` of the model input (1024 for SAM)."""
        return int(self.model.image_size)

    @property
    def mask_input_size(self) -> Tuple[int, int]:
        """``(4E, 4E)``: the size of low-resolution logits (256 for SAM)."""
        return tuple(int(s) for s in self.model.prompt_encoder.mask_input_size)

    @torch.no_grad()
    def set_image(self, image: Union[np.ndarray, torch.Tensor], image_format: str = 'RGB') -> None:
        """Compute the embedding of an image.

        Args:
            image (np.ndarray | Tensor): ``(H, W, 3)`` uint8.
            image_format (str): ``'RGB'`` or ``'BGR'``. Defaults to ``'RGB'``.
        """
        rgb = image_to_rgb_uint8(image, image_format)
        chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        inputs, input_size = self.model.data_preprocessor.preprocess_image(chw)
        self._encode(inputs[None], rgb.shape[:2], input_size)

    @torch.no_grad()
    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: Sequence[int]
    ) -> None:
        """Compute the embedding of an image already resized to the input frame.

        Args:
            transformed_image (Tensor): ``(1, 3, h, w)`` RGB, 0..255, with
                ``max(h, w) == image_size`` (the official ``set_torch_image`` input).
            original_image_size (tuple[int, int]): ``(H, W)`` before resizing.
        """
        encoder_side = getattr(self.model.data_preprocessor, 'encoder_image_size', self.image_size)
        if encoder_side != self.image_size:
            raise ValueError(
                f'this model encodes {encoder_side} px inputs in a {self.image_size} px frame '
                '(e.g. EfficientViT-SAM-L): give the original image to set_image(...), which '
                'resizes it for the encoder'
            )
        shape = tuple(transformed_image.shape)
        if len(shape) != 4 or shape[:2] != (1, 3) or max(shape[2:]) != self.image_size:
            raise ValueError(
                'transformed_image must have shape (1, 3, h, w) with max(h, w) == '
                f'{self.image_size}, got {shape}'
            )
        inputs = self.model.data_preprocessor.normalize_and_pad(transformed_image[0])
        self._encode(inputs[None], original_image_size, shape[2:])

    def _encode(self, inputs: torch.Tensor, original_size, input_size) -> None:
        self.reset_image()
        features = self.model.extract_feat(inputs.to(self.device))[0]
        self._store(features, original_size, input_size)

    def set_image_embedding(
        self,
        embedding: Union[np.ndarray, torch.Tensor],
        original_size: Sequence[int],
        input_size: Optional[Sequence[int]] = None,
    ) -> None:
        """Use an embedding computed elsewhere (e.g. cached by a server).

        Args:
            embedding (np.ndarray | Tensor): ``(1, 256, E, E)`` or ``(256, E, E)``,
                as returned by :meth:`get_image_embedding` for the same model.
            original_size (tuple[int, int]): ``(H, W)`` of the image it came from.
            input_size (tuple[int, int], optional): ``(h, w)`` of the resized image;
                computed from ``original_size`` when omitted and checked when given.
        """
        if isinstance(embedding, np.ndarray):
            embedding = torch.from_numpy(embedding)
        if not isinstance(embedding, torch.Tensor):
            raise ValueError(
                f'embedding must be a tensor or numpy array, got {type(embedding).__name__}'
            )
        if embedding.dim() == 3:
            embedding = embedding[None]
        side = self.image_size // 16
        expected = (1, self.model.embedding_dims, side, side)
        input_size = self._embedding_input_size(
            embedding.shape, expected, original_size, input_size
        )
        self.reset_image()
        self._store(embedding.to(self.device, torch.float32), original_size, input_size)

    # ------------------------------------------------------------------ prompts
    def predict(
        self,
        point_coords: Optional[ArrayLike] = None,
        point_labels: Optional[ArrayLike] = None,
        box: Optional[ArrayLike] = None,
        mask_input: Optional[ArrayLike] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: Optional[bool] = None,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts in original-image pixels.

        One prompt: ``point_coords (P, 2)`` with ``point_labels (P,)`` (1 foreground,
        0 background), ``box (4,)`` XYXY, ``mask_input (1, 4E, 4E)`` (low-resolution
        logits from a previous call), any subset. Batched prompts on the same image:
        ``point_coords (N, P, 2)`` with ``point_labels (N, P)``, ``box (N, 4)``,
        ``mask_input (N, 1, 4E, 4E)``; a single prompt given with batched ones is
        repeated for each of the ``N``.

        Args:
            point_coords: Point ``(x, y)`` pixels.
            point_labels: Labels of the points.
            box: XYXY box(es) with ``x2 >= x1`` and ``y2 >= y1``.
            mask_input: Low-resolution logits.
            multimask_output (bool): Three masks per prompt (``C = 3``), or one.
                SAM-HQ gives one mask either way (its best SAM output by predicted IoU,
                or its single output, fused with the HQ output), as the official one.
            return_logits (bool): Return float logits instead of boolean masks.
            hq_token_only (bool, optional): SAM-HQ only (the official predictor's
                option): the HQ output alone. None: the decoder's ``hq_token_only``
                setting (False in the published configs, as the official default).

        Returns:
            tuple[np.ndarray, np.ndarray, np.ndarray]: masks ``(C, H, W)`` (bool, or
            float32 logits), scores ``(C,)`` and low-resolution logits
            ``(C, 4E, 4E)``; with batched prompts ``(N, C, H, W)``, ``(N, C)`` and
            ``(N, C, 4E, 4E)``; ``N = 0`` (e.g. ``box`` of shape ``(0, 4)``) gives
            empty arrays of these shapes.
        """
        self._check_image_set()
        coords_t, labels_t, box_t, mask_t, batched = self._prepare_prompts(
            point_coords, point_labels, box, mask_input
        )
        masks, scores, low_res = self.predict_torch(
            coords_t, labels_t, box_t, mask_t, multimask_output, return_logits, hq_token_only
        )
        out = tuple(t.detach().cpu().numpy() for t in (masks, scores, low_res))
        if not batched:
            out = tuple(a[0] for a in out)
        return out

    def _no_masks(self, multimask_output: bool, return_logits: bool):
        """The empty results of zero prompts, shaped as :meth:`predict_torch`'s."""
        c = 3 if multimask_output else 1
        height, width = self.original_size
        kwargs = dict(device=self.device)
        masks = torch.zeros(
            (0, c, height, width), dtype=torch.float32 if return_logits else torch.bool, **kwargs
        )
        scores = torch.zeros((0, c), dtype=torch.float32, **kwargs)
        return masks, scores, torch.zeros((0, c, *self.mask_input_size), **kwargs)

    def _prepare_prompts(self, point_coords, point_labels, box, mask_input):
        """Checked prompts (:func:`~mmsam.structures.prepare_prompts`) as input-frame
        tensors ``(N, ...)`` on the model's device, and whether they were batched."""
        prompts = self._prompt_arrays(point_coords, point_labels, box, mask_input)
        device = self.device

        def tensor(array, dtype):
            return None if array is None else torch.as_tensor(array, dtype=dtype, device=device)

        return (
            tensor(prompts.point_coords, torch.float32),
            tensor(prompts.point_labels, torch.int32),
            tensor(prompts.boxes, torch.float32),
            tensor(prompts.mask_inputs, torch.float32),
            prompts.batched,
        )

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: Optional[bool] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks for batched prompts already in the input frame (official ``predict_torch``).

        Args:
            point_coords (Tensor, optional): ``(N, P, 2)`` input-frame pixels.
            point_labels (Tensor, optional): ``(N, P)``.
            boxes (Tensor, optional): ``(N, 4)`` XYXY, input frame.
            mask_input (Tensor, optional): ``(N, 1, 4E, 4E)`` low-resolution logits.
            multimask_output (bool): ``C = 3`` masks per prompt, or 1 (SAM-HQ: 1).
            return_logits (bool): Return logits instead of boolean masks.
            hq_token_only (bool, optional): SAM-HQ only: see :meth:`predict`.

        Returns:
            tuple[Tensor, Tensor, Tensor]: masks ``(N, C, H, W)``, scores ``(N, C)``,
            low-resolution logits ``(N, C, 4E, 4E)``; ``N = 0`` (no prompts, e.g. a
            detector that found nothing) gives empty tensors of these shapes.
        """
        self._check_image_set()
        if (point_coords is None) != (point_labels is None):
            raise ValueError('point_coords and point_labels must be given together')
        given = [t for t in (point_coords, boxes, mask_input) if t is not None]
        if given and given[0].shape[0] == 0:
            return self._no_masks(multimask_output, return_logits)
        points = None if point_coords is None else (point_coords, point_labels)
        low_res, scores = self.model.predict_prompts(
            self.features, points, boxes, mask_input, multimask_output, hq_token_only
        )
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, scores, low_res
