"""Positional encoding with random spatial frequencies (Tancik et al., 2020)."""

import math
from typing import Tuple

import torch
import torch.nn as nn


class RandomPositionEncoding(nn.Module):
    """Encode 2-D positions as ``[sin(2 pi f . p), cos(2 pi f . p)]``.

    The frequency matrix ``f`` is a fixed Gaussian draw kept as a buffer
    (``positional_encoding_gaussian_matrix``, as in the official checkpoints).

    Args:
        num_pos_feats (int): Frequencies; the encoding has ``2 * num_pos_feats``
            channels. Defaults to 64.
        scale (float): Standard deviation of the frequencies; values <= 0 mean 1.0.
            Defaults to 1.0.
    """

    def __init__(self, num_pos_feats: int = 64, scale: float = 1.0) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer(
            'positional_encoding_gaussian_matrix', scale * torch.randn((2, num_pos_feats))
        )

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode coordinates normalized to ``[0, 1]``.

        Args:
            coords (Tensor): ``(..., 2)`` as ``(x, y)``.

        Returns:
            Tensor: ``(..., 2 * num_pos_feats)``.
        """
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """Encode the centres of an ``(h, w)`` grid of cells.

        Returns:
            Tensor: ``(2 * num_pos_feats, h, w)``.
        """
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(
            [xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1
        )  # (h, w, 2) as (x, y)
        return self.encode(grid).permute(2, 0, 1)

    def forward_with_coords(
        self, coords: torch.Tensor, image_size: Tuple[int, int]
    ) -> torch.Tensor:
        """Encode pixel coordinates of an image of size ``(H, W)``.

        Args:
            coords (Tensor): ``(B, N, 2)`` as ``(x, y)`` in pixels.
            image_size (tuple[int, int]): ``(H, W)``.

        Returns:
            Tensor: ``(B, N, 2 * num_pos_feats)``, float32.
        """
        h, w = image_size
        size = torch.tensor([w, h], dtype=torch.float32, device=coords.device)
        return self.encode(coords.to(torch.float32) / size)
