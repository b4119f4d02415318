"""SAM's prompt encoder: points, boxes and low-resolution masks to embeddings."""

from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS

from ...structures.prompts import check_prompt_batch
from ..layers import LayerNorm2d, RandomPositionEncoding

Points = Tuple[torch.Tensor, torch.Tensor]


@MODELS.register_module()
class SAMPromptEncoder(nn.Module):
    """Encode prompts for SAM's mask decoder.

    Points carry labels: 1 foreground, 0 background, -1 padding ("not a point").
    A box is two corner tokens. A mask prompt (low-resolution logits) is
    downscaled by convolutions into a dense embedding added to the image
    embedding; without one, a learned "no mask" embedding is used.

    Args:
        embed_dims (int): Channels of the prompt embeddings. Defaults to 256.
        image_embedding_size (tuple[int, int]): ``(h, w)`` of the image embedding.
            Defaults to ``(64, 64)``.
        input_image_size (tuple[int, int]): ``(H, W)`` of the padded model input.
            Defaults to ``(1024, 1024)``.
        mask_in_channels (int): Hidden channels of the mask downscaling. Defaults to 16.
        act_layer (type): Activation of the mask downscaling. Defaults to ``nn.GELU``.
    """

    num_point_embeddings = 4  # negative point, positive point, box top-left, box bottom-right

    def __init__(
        self,
        embed_dims: int = 256,
        image_embedding_size: Tuple[int, int] = (64, 64),
        input_image_size: Tuple[int, int] = (1024, 1024),
        mask_in_channels: int = 16,
        act_layer: type = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = RandomPositionEncoding(embed_dims // 2)
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dims) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dims)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_channels // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_channels // 4, eps=1e-6),
            act_layer(),
            nn.Conv2d(mask_in_channels // 4, mask_in_channels, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_channels, eps=1e-6),
            act_layer(),
            nn.Conv2d(mask_in_channels, embed_dims, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dims)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid, ``(1, C, h, w)``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """Embed labelled points.

        Args:
            coords (Tensor): ``(N, P, 2)`` pixel ``(x, y)`` in the input frame.
            labels (Tensor): ``(N, P)``; 1 foreground, 0 background, -1 padding.
            pad (bool): Append one padding point (done when no box is given).

        Returns:
            Tensor: ``(N, P (+1), C)``.
        """
        coords = coords + 0.5  # centre of the pixel
        if pad:
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        embedding = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        labels = labels[..., None]
        embedding = embedding + torch.where(
            labels == 1,
            self.point_embeddings[1].weight,
            torch.where(labels == 0, self.point_embeddings[0].weight, 0.0),
        )
        return torch.where(labels == -1, self.not_a_point_embed.weight, embedding)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Embed ``(N, 4)`` XYXY boxes (input frame) as ``(N, 2, C)`` corner tokens."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_types = torch.cat(
            [self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0
        )
        return embedding + corner_types

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Embed ``(N, 1, 4h, 4w)`` mask logits as ``(N, C, h, w)``."""
        return self.mask_downscaling(masks)

    def forward(
        self,
        points: Optional[Points] = None,
        boxes: Optional[torch.Tensor] = None,
        masks: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embed any combination of prompts (none at all gives one empty prompt).

        Args:
            points (tuple[Tensor, Tensor], optional): ``(coords (N, P, 2), labels (N, P))``.
            boxes (Tensor, optional): ``(N, 4)`` XYXY, input frame.
            masks (Tensor, optional): ``(N, 1, 4h, 4w)`` low-resolution logits.

        Returns:
            tuple[Tensor, Tensor]: sparse embeddings ``(N, K, C)`` (``K`` tokens from
            points and box corners) and dense embeddings ``(N, C, h, w)``.
        """
        n = check_prompt_batch(points, boxes, masks, self.mask_input_size)
        weight = self.no_mask_embed.weight
        tokens = [weight.new_empty((n, 0, self.embed_dims))]
        if points is not None:
            tokens.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            tokens.append(self.embed_boxes(boxes))
        sparse = torch.cat(tokens, dim=1)
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            dense = weight.reshape(1, -1, 1, 1).expand(n, -1, *self.image_embedding_size)
        return sparse, dense
