"""Resize, normalize and pad images for SAM, exactly as the official code does."""

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseDataPreprocessor

from ...structures.transforms import get_preprocess_shape, resize_longest_side


@MODELS.register_module()
class SAMDataPreprocessor(BaseDataPreprocessor):
    """Turn original-size uint8 images into SAM's normalized, padded input.

    Each image is resized so that its longest side is ``image_size`` with PIL's
    bilinear filter on uint8 (the official ``ResizeLongestSide.apply_image``),
    normalized with ``mean``/``std`` and zero-padded at the bottom/right to
    ``image_size x image_size``. Prompts stay in the original frame; the model
    maps them using the metainfo written here.

    Args:
        mean (Sequence[float]): Pixel mean, RGB. Defaults to SAM's.
        std (Sequence[float]): Pixel std, RGB. Defaults to SAM's.
        image_size (int): Side of the padded input. Defaults to 1024.
        bgr_to_rgb (bool): Batches given to :meth:`forward` are BGR (as mmcv/mmdet
            load them) and are flipped to RGB. :meth:`preprocess_image` always takes
            RGB. Defaults to False.
        encoder_image_size (int, optional): Side of the encoder's pixel input when it
            differs from ``image_size`` (EfficientViT-SAM's L models: 512, the official
            ``SamResize`` + ``SamPad``): images are resized to this longest side and
            padded to it, while prompts, masks and the metainfo stay in the
            ``image_size`` frame. Defaults to None (``image_size``).
        non_blocking (bool): Non-blocking device transfer. Defaults to False.
    """

    def __init__(
        self,
        mean: Sequence[float] = (123.675, 116.28, 103.53),
        std: Sequence[float] = (58.395, 57.12, 57.375),
        image_size: int = 1024,
        bgr_to_rgb: bool = False,
        non_blocking: bool = False,
        encoder_image_size: Optional[int] = None,
    ) -> None:
        super().__init__(non_blocking)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError('mean and std must have 3 values (R, G, B)')
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), False)
        self.image_size = int(image_size)
        self.encoder_image_size = int(encoder_image_size or image_size)
        self.bgr_to_rgb = bgr_to_rgb

    def resize(self, image: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
        """Resize a ``(3, H, W)`` uint8 image to ``(h, w, 3)`` uint8 (channel order kept).

        Args:
            image (np.ndarray | Tensor): ``(3, H, W)`` uint8.

        Returns:
            np.ndarray: ``(h, w, 3)`` uint8, resized with PIL's bilinear filter.
        """
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        if image.dtype != np.uint8:
            raise ValueError(f'images must be uint8, got {image.dtype}')
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f'images must have shape (3, H, W), got {tuple(image.shape)}')
        side = self.encoder_image_size
        return resize_longest_side(np.ascontiguousarray(image.transpose(1, 2, 0)), side)

    def normalize_and_pad(self, image: torch.Tensor) -> torch.Tensor:
        """Normalize ``(3, h, w)`` RGB values and zero-pad to ``(3, S, S)``.

        Args:
            image (Tensor): ``(3, h, w)`` or ``(B, 3, h, w)``, any real dtype, 0..255.

        Returns:
            Tensor: float32 ``(..., 3, S, S)`` on the preprocessor's device (``S`` is
            ``encoder_image_size``).
        """
        image = image.to(self.mean.device, torch.float32, non_blocking=self._non_blocking)
        image = (image - self.mean) / self.std
        h, w = image.shape[-2:]
        side = self.encoder_image_size
        if h > side or w > side:
            raise ValueError(f'image of size {(h, w)} exceeds the input size {side}')
        return F.pad(image, (0, side - w, 0, side - h))

    def preprocess_image(
        self, image: Union[np.ndarray, torch.Tensor]
    ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Preprocess one ``(3, H, W)`` uint8 RGB image (``bgr_to_rgb`` is not applied here).

        Returns:
            tuple: the model input ``(3, S, S)`` float32 and the input size ``(h, w)``
            (in the ``image_size`` frame, also when ``encoder_image_size`` differs).
        """
        resized = self.resize(image)
        tensor = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)
        if self.encoder_image_size != self.image_size:
            h, w = (int(s) for s in image.shape[-2:])
            return self.normalize_and_pad(tensor), get_preprocess_shape(h, w, self.image_size)
        return self.normalize_and_pad(tensor), tuple(resized.shape[:2])

    def forward(self, data: dict, training: bool = False) -> dict:
        """Preprocess a batch.

        Args:
            data (dict): ``inputs``: a list of ``(3, H, W)`` uint8 tensors (or a
                ``(B, 3, H, W)`` uint8 tensor), ``data_samples`` (optional): a list of
                :class:`DetDataSample`.
            training (bool): Unused; kept for the mmengine interface.

        Returns:
            dict: ``inputs`` ``(B, 3, S, S)`` float32 and ``data_samples`` with
            ``ori_shape``, ``img_shape``, ``pad_shape`` and ``scale_factor`` set.
        """
        inputs = data['inputs']
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() == 3:
                inputs = [inputs]
            elif inputs.dim() == 4:
                inputs = list(inputs)
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError('data["inputs"] must be a non-empty list of (3, H, W) uint8 images')
        data_samples: Optional[List] = data.get('data_samples')
        if data_samples is not None and len(data_samples) != len(inputs):
            raise ValueError(f'got {len(inputs)} images but {len(data_samples)} data samples')
        batch = []
        for i, image in enumerate(inputs):
            ori_hw = tuple(int(s) for s in image.shape[-2:])
            if self.bgr_to_rgb:
                if image.dim() != 3 or image.shape[0] != 3:
                    raise ValueError(f'images must have shape (3, H, W), got {tuple(image.shape)}')
                image = image.flip(0)
            tensor, input_hw = self.preprocess_image(image)
            batch.append(tensor)
            if data_samples is not None:
                expected = get_preprocess_shape(ori_hw[0], ori_hw[1], self.image_size)
                assert tuple(input_hw) == expected
                data_samples[i].set_metainfo(
                    dict(
                        ori_shape=ori_hw,
                        img_shape=tuple(input_hw),
                        pad_shape=(self.image_size, self.image_size),
                        batch_input_shape=(self.encoder_image_size, self.encoder_image_size),
                        scale_factor=(input_hw[1] / ori_hw[1], input_hw[0] / ori_hw[0]),
                    )
                )
        if data_samples is not None:
            data_samples = self.cast_data(data_samples)
        return dict(inputs=torch.stack(batch), data_samples=data_samples)
