"""Split a token grid into non-overlapping square windows and merge it back."""

from typing import Tuple

import torch
import torch.nn.functional as F


def window_partition(x: torch.Tensor, window_size: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Cut a grid into ``window_size x window_size`` windows, zero-padding bottom/right.

    Args:
        x (Tensor): Tokens of shape ``(B, H, W, C)``.
        window_size (int): Side of a window.

    Returns:
        tuple: ``windows`` of shape ``(B * nH * nW, window_size, window_size, C)`` and
        the padded grid size ``(Hp, Wp)``.
    """
    b, h, w, c = x.shape
    pad_h = -h % window_size
    pad_w = -w % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, padded_hw: Tuple[int, int], hw: Tuple[int, int]
) -> torch.Tensor:
    """Reassemble windows into a grid and drop the padding.

    Args:
        windows (Tensor): ``(B * nH * nW, window_size, window_size, C)``.
        window_size (int): Side of a window.
        padded_hw (tuple[int, int]): ``(Hp, Wp)`` returned by :func:`window_partition`.
        hw (tuple[int, int]): ``(H, W)`` before padding.

    Returns:
        Tensor: Tokens of shape ``(B, H, W, C)``.
    """
    hp, wp = padded_hw
    h, w = hw
    n_h, n_w = hp // window_size, wp // window_size
    b = windows.shape[0] // (n_h * n_w)
    x = windows.view(b, n_h, n_w, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x
