"""SAM's image encoder as a traceable module: preprocessed image to image embedding."""

import torch
import torch.nn as nn


class SAMOnnxEncoder(nn.Module):
    """Wrap ``model.backbone`` so that it returns one tensor.

    The input is what ``SAMDataPreprocessor`` produces: resized so that the longest
    side is ``input_size`` (the encoder's: ``image_size``, or 512 for EfficientViT-SAM's
    L models), normalized with the model's mean/std and zero-padded at the bottom/right.
    The backbone is shared, not copied.

    Args:
        model (mmsam.models.SAM): The model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.image_size = int(model.image_size)
        self.input_size = int(getattr(model.backbone, 'input_size', self.image_size))
        # SAM-HQ: the early feature travels with the embedding (SAM.extract_feat's layout)
        decoder = getattr(model, 'mask_decoder', None)
        packs = getattr(decoder, 'uses_interm_features', False)
        self.pack = decoder.pack_image_features if packs else None

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a preprocessed image.

        Args:
            x (Tensor): ``(1, 3, input_size, input_size)`` float32, normalized and padded.

        Returns:
            Tensor: ``(1, 256, S / 16, S / 16)`` (SAM-HQ: ``(1, 256 + V, ...)``, with
            the encoder's early feature).
        """
        feats = self.backbone(x)
        return feats[0] if self.pack is None else self.pack(feats[0], feats[-1])
