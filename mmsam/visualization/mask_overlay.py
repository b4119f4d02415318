"""Masks in distinct colours blended over an image, prompt points and boxes drawn on top."""

import colorsys
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

Color = Tuple[int, int, int]

#: Colours of prompt points by label (RGB): foreground green, background red.
POSITIVE_COLOR: Color = (0, 200, 0)
NEGATIVE_COLOR: Color = (230, 0, 0)
BOX_COLOR: Color = (0, 120, 255)


def distinct_colors(n: int, saturation: float = 0.75, value: float = 0.95) -> np.ndarray:
    """``n`` well-separated colours: hues stepped by the golden ratio.

    Args:
        n (int): How many colours.
        saturation (float): HSV saturation in ``[0, 1]``.
        value (float): HSV value in ``[0, 1]``.

    Returns:
        np.ndarray: ``(n, 3)`` uint8 RGB; the same ``n`` always gives the same colours.
    """
    golden = 0.618033988749895
    colors = [colorsys.hsv_to_rgb((0.13 + i * golden) % 1.0, saturation, value) for i in range(n)]
    return np.round(np.array(colors, dtype=np.float64).reshape(n, 3) * 255).astype(np.uint8)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f'image must be a uint8 numpy array, got {type(image).__name__}')
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must have shape (H, W, 3), got {image.shape}')


def draw_masks(
    image: np.ndarray,
    masks: np.ndarray,
    colors: Optional[np.ndarray] = None,
    alpha: float = 0.5,
    contours: bool = True,
) -> np.ndarray:
    """Blend masks over an image, each in its own colour, in the given order.

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        masks (np.ndarray): ``(N, H, W)`` bool (or 0/1).
        colors (np.ndarray, optional): ``(N, 3)`` uint8 RGB; :func:`distinct_colors`
            by default.
        alpha (float): Opacity of a mask, in ``[0, 1]``.
        contours (bool): Also draw each mask's outline in its colour.

    Returns:
        np.ndarray: A new ``(H, W, 3)`` uint8 image.
    """
    _check_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(
            f'masks must have shape (N, {image.shape[0]}, {image.shape[1]}) like the image, '
            f'got {masks.shape}'
        )
    n = masks.shape[0]
    colors = distinct_colors(n) if colors is None else np.asarray(colors, dtype=np.uint8)
    if colors.shape != (n, 3):
        raise ValueError(f'colors must have shape ({n}, 3), got {colors.shape}')
    out = image.astype(np.float32)
    for mask, color in zip(masks, colors.astype(np.float32)):
        region = mask.astype(bool)
        out[region] = out[region] * (1.0 - alpha) + color * alpha
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if contours:
        thickness = max(1, round(max(image.shape[:2]) / 500))
        for mask, color in zip(masks, colors):
            outline, _ = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(out, outline, -1, tuple(int(c) for c in color), thickness)
    return out


def draw_points(
    image: np.ndarray,
    points: np.ndarray,
    labels: Optional[Sequence[int]] = None,
    radius: Optional[int] = None,
) -> np.ndarray:
    """Draw prompt points: label 1 green, label 0 red, each with a white rim.

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        points (np.ndarray): ``(P, 2)`` ``(x, y)`` pixels.
        labels (Sequence[int], optional): ``(P,)``; all foreground by default.
            Label -1 (padding) is not drawn.
        radius (int, optional): Dot radius; scaled to the image by default.

    Returns:
        np.ndarray: A new ``(H, W, 3)`` uint8 image.
    """
    _check_image(image)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = np.ones(len(points), int) if labels is None else np.asarray(labels).reshape(-1)
    if len(labels) != len(points):
        raise ValueError(f'got {len(points)} points but {len(labels)} labels')
    radius = radius or max(3, round(max(image.shape[:2]) / 120))
    out = image.copy()
    for (x, y), label in zip(points, labels):
        if label < 0:
            continue
        center = (int(round(x)), int(round(y)))
        color = POSITIVE_COLOR if label > 0 else NEGATIVE_COLOR
        cv2.circle(out, center, radius + max(1, radius // 3), (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, center, radius, color, -1, cv2.LINE_AA)
    return out


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    color: Color = BOX_COLOR,
    thickness: Optional[int] = None,
) -> np.ndarray:
    """Draw XYXY boxes.

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        boxes (np.ndarray): ``(N, 4)`` XYXY pixels.
        color (tuple[int, int, int]): RGB.
        thickness (int, optional): Line width; scaled to the image by default.

    Returns:
        np.ndarray: A new ``(H, W, 3)`` uint8 image.
    """
    _check_image(image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    thickness = thickness or max(1, round(max(image.shape[:2]) / 300))
    out = image.copy()
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
    return out


def overlay(
    image: np.ndarray,
    masks: Optional[np.ndarray] = None,
    points: Optional[np.ndarray] = None,
    point_labels: Optional[Sequence[int]] = None,
    boxes: Optional[np.ndarray] = None,
    alpha: float = 0.5,
    colors: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Masks blended over the image, then boxes, then points.

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        masks (np.ndarray, optional): ``(N, H, W)`` bool.
        points (np.ndarray, optional): ``(P, 2)`` ``(x, y)`` pixels.
        point_labels (Sequence[int], optional): ``(P,)`` 1 foreground, 0 background.
        boxes (np.ndarray, optional): ``(M, 4)`` XYXY pixels.
        alpha (float): Mask opacity.
        colors (np.ndarray, optional): ``(N, 3)`` uint8 RGB mask colours.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB.
    """
    _check_image(image)
    out = image
    if masks is not None and len(masks):
        out = draw_masks(out, masks, colors=colors, alpha=alpha)
    if boxes is not None and len(boxes):
        out = draw_boxes(out, boxes)
    if points is not None and len(points):
        out = draw_points(out, points, point_labels)
    return out.copy() if out is image else out
