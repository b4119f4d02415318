"""Synthetic test images: smooth random blobs, so the encoder sees structure, not noise."""

import numpy as np
import torch


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A random ``(h, w, 3)`` uint8 RGB image of smooth blobs plus a little noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(h // 16, 2), max(w // 16, 2), 3)).astype(np.float32)
    t = torch.from_numpy(small).permute(2, 0, 1)[None]
    big = torch.nn.functional.interpolate(t, size=(h, w), mode='bilinear', align_corners=False)
    img = big[0].permute(1, 2, 0).numpy() + rng.normal(0, 8, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)
