"""Layer normalization over the channels of a ``(B, C, H, W)`` map."""

import torch
import torch.nn as nn


class LayerNorm2d(nn.Module):
    """Normalize each pixel's channel vector, with a learned affine per channel.

    Args:
        num_channels (int): ``C``.
        eps (float): Added to the variance. Defaults to 1e-6 (SAM's value).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``(B, C, H, W)``; returns the same shape."""
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]
