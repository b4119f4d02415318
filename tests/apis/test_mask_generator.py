"""AutomaticMaskGenerator against the official ``SamAutomaticMaskGenerator``.

Random weights give near-identical, speckled masks, so most checks swap both models'
prompt encoder and mask decoder for the same tiny analytic "blob" decoder: each point
prompt gives three discs of growing radius with a noisy rim, and a pseudo-random
predicted IoU. That exercises every stage (IoU and stability filters, NMS, crops,
edge filtering, small-region removal) with many distinct masks. One test runs the
real random-weight decoders too.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmsam.apis import AutomaticMaskGenerator, SAMPredictor
from mmsam.structures import coco_rle_to_mask, rle_to_mask
from mmsam.testing import build_sam_pair, smooth_image

segment_anything = pytest.importorskip('segment_anything')
from segment_anything import SamAutomaticMaskGenerator  # noqa: E402

IMG_SIZE = 256


class BlobPromptEncoder(nn.Module):
    """Passes the point coordinates (input frame) through as the sparse prompt."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.embed_dims = 256
        self.input_image_size = (image_size, image_size)
        self.image_embedding_size = (image_size // 16, image_size // 16)
        self.mask_input_size = (image_size // 4, image_size // 4)

    def _check_inputs(self, points, boxes, masks) -> int:
        return len(points[0])

    def get_dense_pe(self) -> torch.Tensor:
        return torch.zeros(1)

    def forward(self, points=None, boxes=None, masks=None):
        return points[0].to(torch.float32), torch.zeros(1)


class BlobMaskDecoder(nn.Module):
    """Three noisy discs per point and a pseudo-random predicted IoU."""

    def __init__(self, image_size: int, seed: int = 0) -> None:
        super().__init__()
        self.image_size = image_size
        self.low_res = image_size // 4
        self.num_multimask_outputs = 3
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer('texture', torch.randn((self.low_res,) * 2, generator=gen))

    def forward(
        self,
        image_embeddings,
        image_pe,
        sparse_prompt_embeddings,
        dense_prompt_embeddings,
        multimask_output,
        prompts_per_chunk=None,  # SAM's test_cfg.prompts_per_batch; results do not depend on it
    ):
        pts = sparse_prompt_embeddings[:, 0, :]  # (N, 2)
        step = self.image_size / self.low_res
        centers = (torch.arange(self.low_res, dtype=torch.float32) + 0.5) * step
        dx = centers[None, None, :] - pts[:, 0, None, None]
        dy = centers[None, :, None] - pts[:, 1, None, None]
        dist = torch.sqrt(dx * dx + dy * dy)[:, None]  # (N, 1, L, L)
        radii = torch.tensor([0.06, 0.12, 0.3]).view(1, 3, 1, 1) * self.image_size
        logits = (radii - dist) / (0.015 * self.image_size) + 1.5 * self.texture
        phase = pts[:, :1] * 12.9898 + pts[:, 1:] * 78.233 + torch.arange(3.0)[None]
        iou = torch.frac(torch.sin(phase).abs() * 437.5453)
        if not multimask_output:
            return logits[:, :1], iou[:, :1]
        return logits, iou


def _blobify(model, image_size):
    model.prompt_encoder = BlobPromptEncoder(image_size)
    model.mask_decoder = BlobMaskDecoder(image_size)
    return model


@pytest.fixture(scope='module')
def real_pair():
    return build_sam_pair('tiny', img_size=IMG_SIZE, window_size=4, seed=1)


@pytest.fixture(scope='module')
def blob_pair():
    official, ours = build_sam_pair('tiny', img_size=IMG_SIZE, window_size=4, seed=2)
    return _blobify(official, IMG_SIZE), _blobify(ours, IMG_SIZE)


@pytest.fixture(scope='module')
def image():
    return smooth_image(120, 200, seed=3)


def _decode(segmentation):
    if isinstance(segmentation, np.ndarray):
        return segmentation
    if isinstance(segmentation['counts'], list):
        return rle_to_mask(segmentation)
    return coco_rle_to_mask(segmentation)


def assert_same_records(ref, ours, score_atol=1e-5, stability_atol=1e-5, pixel_tol=0):
    """Records equal in order and content; ``pixel_tol`` pixels per mask may differ."""
    assert len(ours) == len(ref)
    for i, (r, o) in enumerate(zip(ref, ours)):
        assert set(o) == set(r)
        assert type(o['segmentation']) is type(r['segmentation'])
        if pixel_tol:
            differ = (_decode(o['segmentation']) != _decode(r['segmentation'])).sum()
            assert differ <= pixel_tol, (i, differ)
            assert abs(o['area'] - r['area']) <= pixel_tol
        elif isinstance(r['segmentation'], np.ndarray):
            np.testing.assert_array_equal(o['segmentation'], r['segmentation'], err_msg=str(i))
        else:
            assert o['segmentation'] == r['segmentation'], i
            assert o['area'] == r['area'], i
        for key in ('bbox', 'point_coords', 'crop_box'):
            assert o[key] == r[key], (i, key, o[key], r[key])
        assert isinstance(o['area'], int) and all(isinstance(v, int) for v in o['bbox'])
        assert math.isclose(o['predicted_iou'], r['predicted_iou'], abs_tol=score_atol), i
        if not (math.isnan(r['stability_score']) and math.isnan(o['stability_score'])):
            assert math.isclose(
                o['stability_score'], r['stability_score'], abs_tol=stability_atol
            ), (i, o['stability_score'], r['stability_score'])


BLOB_SETTINGS = dict(points_per_side=8, pred_iou_thresh=0.3, stability_score_thresh=0.6)


@pytest.mark.parametrize('mode', ['binary_mask', 'uncompressed_rle', 'coco_rle'])
def test_blob_records_match_official(blob_pair, image, mode):
    official, ours = blob_pair
    ref = SamAutomaticMaskGenerator(official, output_mode=mode, **BLOB_SETTINGS).generate(image)
    got = AutomaticMaskGenerator(ours, output_mode=mode, **BLOB_SETTINGS).generate(image)
    assert len(got) >= 8, 'the test should see many masks'
    assert len({tuple(r['bbox']) for r in got}) == len(got)
    assert_same_records(ref, got)
    for record in got:
        mask = _decode(record['segmentation'])
        assert mask.shape == image.shape[:2] and record['area'] == int(mask.sum())


def test_blob_batching_does_not_change_results(blob_pair, image):
    official, ours = blob_pair
    ref = SamAutomaticMaskGenerator(official, **BLOB_SETTINGS).generate(image)
    got = AutomaticMaskGenerator(
        SAMPredictor(ours), points_per_batch=7, upscale_chunk=5, **BLOB_SETTINGS
    ).generate(image)
    assert_same_records(ref, got)


@pytest.mark.parametrize(
    'extra',
    [
        dict(crop_n_layers=1, crop_n_points_downscale_factor=2),
        dict(min_mask_region_area=40, stability_score_thresh=0.3),
        dict(crop_n_layers=1, min_mask_region_area=25, crop_nms_thresh=0.5),
    ],
    ids=['crops', 'small_regions', 'crops_and_small_regions'],
)
def test_blob_crops_and_small_regions_match_official(blob_pair, image, extra):
    official, ours = blob_pair
    settings = dict(BLOB_SETTINGS, **extra)
    ref = SamAutomaticMaskGenerator(official, **settings).generate(image)
    got = AutomaticMaskGenerator(ours, **settings).generate(image)
    assert len(got) >= 5
    assert_same_records(ref, got)
    if 'crop_n_layers' in extra:
        assert len({tuple(r['crop_box']) for r in got}) > 1, 'no mask kept from a crop'


def test_blob_non_square_tall_image(blob_pair):
    official, ours = blob_pair
    image = smooth_image(210, 90, seed=4)
    ref = SamAutomaticMaskGenerator(official, **BLOB_SETTINGS).generate(image)
    got = AutomaticMaskGenerator(ours, **BLOB_SETTINGS).generate(image)
    assert len(got) >= 5
    assert_same_records(ref, got)


def test_real_decoder_records_match_official(real_pair, image):
    """Random weights: masks are speckled and nearly alike, so NMS is off here.

    The two models' logits differ by ~1e-6 (different but equivalent op orders), so a
    pixel whose logit is that close to a threshold may flip: two pixels per mask are
    allowed, and the stability score (small offset, so it is not trivially 0) is
    compared to 1e-3.
    """
    official, ours = real_pair
    settings = dict(
        points_per_side=6,
        pred_iou_thresh=0.001,
        stability_score_thresh=0.01,
        stability_score_offset=0.05,
        box_nms_thresh=1.0,
    )
    ref = SamAutomaticMaskGenerator(official, **settings).generate(image)
    got = AutomaticMaskGenerator(ours, **settings).generate(image)
    assert len(got) >= 5
    assert_same_records(ref, got, stability_atol=1e-3, pixel_tol=2)


def test_empty_result(blob_pair, image):
    _, ours = blob_pair
    generator = AutomaticMaskGenerator(ours, points_per_side=4, pred_iou_thresh=1.0)
    assert generator.generate(image) == []
    generator = AutomaticMaskGenerator(
        ours, points_per_side=4, pred_iou_thresh=1.0, min_mask_region_area=10, crop_n_layers=1
    )
    assert generator.generate(image) == []


def test_explicit_point_grids(blob_pair, image):
    official, ours = blob_pair
    grid = np.array([[0.2, 0.3], [0.5, 0.5], [0.9, 0.1]])
    settings = dict(
        points_per_side=None, point_grids=[grid], pred_iou_thresh=0.0, stability_score_thresh=0.3
    )
    ref = SamAutomaticMaskGenerator(official, **settings).generate(image)
    got = AutomaticMaskGenerator(ours, **settings).generate(image)
    assert len(got) >= 1
    assert_same_records(ref, got)


def test_bad_arguments(blob_pair):
    _, ours = blob_pair
    with pytest.raises(ValueError, match='exactly one of points_per_side and point_grids'):
        AutomaticMaskGenerator(ours, points_per_side=None)
    with pytest.raises(ValueError, match='output_mode'):
        AutomaticMaskGenerator(ours, output_mode='polygon')
    with pytest.raises(ValueError, match='one grid per crop layer'):
        AutomaticMaskGenerator(
            ours, points_per_side=None, point_grids=[np.zeros((2, 2))], crop_n_layers=1
        )
    with pytest.raises(ValueError, match=r'point_grids\[0\] must hold'):
        AutomaticMaskGenerator(ours, points_per_side=None, point_grids=[np.full((2, 2), 3.0)])
    with pytest.raises(ValueError, match='points_per_batch'):
        AutomaticMaskGenerator(ours, points_per_batch=0)
    with pytest.raises(ValueError, match='uint8'):
        AutomaticMaskGenerator(ours).generate(np.zeros((10, 10, 3), np.float32))
