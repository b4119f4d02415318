"""Click simulation: distance transform, farthest point and the next interactive click."""

import numpy as np
import pytest
from scipy import ndimage

from mmsam.evaluation import distance_to_boundary, farthest_point, next_click


def _blobs(h, w, seed):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random((h, w)), 3) > 0.5


@pytest.mark.parametrize('seed', range(5))
def test_distance_equals_scipy_edt_with_the_border_as_boundary(seed):
    mask = _blobs(70, 90, seed)
    mask[:, :5] = True  # touches the image border
    expected = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    assert np.array_equal(distance_to_boundary(mask), expected)  # exact, ties included


def test_farthest_point_of_a_rectangle_at_the_border():
    mask = np.zeros((20, 30), bool)
    mask[0:9, 0:21] = True  # rows 0..8, the image's top/left edges are boundary
    point, dist = farthest_point(mask)
    assert point == (4, 4) and dist == 5.0  # first of the tied maxima in row-major order
    assert farthest_point(np.zeros((4, 4), bool)) == (None, 0.0)


def test_next_click_in_the_larger_error_region():
    gt = np.zeros((40, 40), bool)
    gt[5:25, 5:25] = True
    pred = np.zeros_like(gt)
    pred[5:25, 5:12] = True  # misses most of gt: positive click in the missed part
    x, y, label = next_click(gt, pred)
    assert label == 1 and gt[y, x] and not pred[y, x]
    pred = gt.copy()
    pred[28:40, 10:34] = True  # a false region larger than nothing: negative click
    x, y, label = next_click(gt, pred)
    assert label == 0 and pred[y, x] and not gt[y, x] and (x, y) == (15, 33)
    assert next_click(gt, gt) is None


def test_next_click_is_negative_on_ties_and_checks_shapes():
    gt = np.zeros((9, 20), bool)
    gt[3:6, 2:5] = True  # a 3x3 false negative
    pred = np.zeros_like(gt)
    pred[3:6, 12:15] = True  # a 3x3 false positive, same depth
    assert next_click(gt, pred) == (13, 4, 0)
    with pytest.raises(ValueError, match='differ'):
        next_click(gt, pred[:, :10])
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        distance_to_boundary(np.zeros((2, 3, 4), bool))


def test_farthest_point_equals_scipy_argmax_on_random_masks():
    rng = np.random.default_rng(1)
    for _ in range(50):
        sigma, level = rng.uniform(1, 6), rng.uniform(0.45, 0.6)
        mask = ndimage.gaussian_filter(rng.random((40, 60)), sigma) > level
        dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        point, best = farthest_point(mask)
        if not mask.any():
            assert point is None
            continue
        row, col = np.unravel_index(np.argmax(dist), dist.shape)
        assert point == (col, row) and best == dist[row, col]
