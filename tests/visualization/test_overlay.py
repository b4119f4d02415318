"""Mask overlay: exact alpha blending, distinct colours, points and boxes, atomic PNG writing."""

import os

import numpy as np
import pytest
from PIL import Image

from mmsam.visualization import (
    distinct_colors,
    draw_boxes,
    draw_masks,
    draw_points,
    overlay,
    save_mask_png,
    save_png,
)
from mmsam.visualization.mask_overlay import NEGATIVE_COLOR, POSITIVE_COLOR


def test_distinct_colors():
    colors = distinct_colors(12)
    assert colors.shape == (12, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == 12
    diffs = np.abs(colors[:, None].astype(int) - colors[None].astype(int)).sum(-1)
    assert diffs[~np.eye(12, dtype=bool)].min() > 20
    np.testing.assert_array_equal(distinct_colors(12), colors)


def test_alpha_blending_exact():
    image = np.full((10, 10, 3), 100, np.uint8)
    masks = np.zeros((2, 10, 10), bool)
    masks[0, :5] = True
    masks[1, 3:7] = True
    colors = np.array([[200, 0, 0], [0, 0, 250]], np.uint8)
    out = draw_masks(image, masks, colors=colors, alpha=0.5, contours=False)
    np.testing.assert_array_equal(out[0, 0], [150, 50, 50])
    np.testing.assert_array_equal(out[4, 0], [75, 25, 150])  # both: mask 1 over mask 0
    np.testing.assert_array_equal(out[5, 0], [50, 50, 175])
    np.testing.assert_array_equal(out[9, 9], [100, 100, 100])
    assert (image == 100).all()  # input untouched


def test_contours_and_validation():
    image = np.zeros((20, 20, 3), np.uint8)
    masks = np.zeros((1, 20, 20), bool)
    masks[0, 5:15, 5:15] = True
    out = draw_masks(image, masks, colors=[[0, 255, 0]], alpha=0.0, contours=True)
    assert out[5, 10, 1] == 255 and out[10, 10, 1] == 0 and out[0, 0, 1] == 0
    with pytest.raises(ValueError, match='masks must have shape'):
        draw_masks(image, np.zeros((1, 5, 5), bool))
    with pytest.raises(ValueError, match='alpha'):
        draw_masks(image, masks, alpha=2)
    with pytest.raises(ValueError, match='uint8'):
        draw_masks(image.astype(float), masks)


def test_points_and_boxes():
    image = np.zeros((50, 50, 3), np.uint8)
    out = draw_points(image, [[10, 10], [40, 40], [25, 25]], [1, 0, -1], radius=3)
    np.testing.assert_array_equal(out[10, 10], POSITIVE_COLOR)
    np.testing.assert_array_equal(out[40, 40], NEGATIVE_COLOR)
    assert (out[25, 25] == 0).all()  # padding point not drawn
    boxed = draw_boxes(image, [[5, 5, 30, 20]], color=(9, 8, 7), thickness=1)
    np.testing.assert_array_equal(boxed[5, 15], [9, 8, 7])
    np.testing.assert_array_equal(boxed[20, 15], [9, 8, 7])
    assert (boxed[12, 15] == 0).all()
    with pytest.raises(ValueError, match='labels'):
        draw_points(image, [[1, 1]], [1, 0])


def test_overlay_and_png(tmp_path):
    image = np.full((16, 24, 3), 30, np.uint8)
    masks = np.zeros((3, 16, 24), bool)
    masks[0, :8], masks[1, 8:, :12], masks[2, 8:, 12:] = True, True, True
    out = overlay(image, masks, points=[[2, 2]], point_labels=[1], boxes=[[1, 1, 20, 14]])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert len({tuple(out[12, 4]), tuple(out[12, 18]), tuple(out[4, 10])}) == 3
    assert overlay(image) is not image and (overlay(image) == image).all()
    path = save_png(str(tmp_path / 'sub' / 'o.png'), out)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), out)
    save_mask_png(str(tmp_path / 'm.png'), masks[1])
    back = np.asarray(Image.open(tmp_path / 'm.png'))
    np.testing.assert_array_equal(back, masks[1].astype(np.uint8) * 255)
    assert sorted(os.listdir(tmp_path)) == ['m.png', 'sub']  # no temporary files left
    with pytest.raises(ValueError, match='shape'):
        save_png(str(tmp_path / 'bad.png'), np.zeros((2, 2, 4), np.uint8))
    assert not (tmp_path / 'bad.png').exists()
