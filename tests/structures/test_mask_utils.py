"""RLE and automatic-mask-generation utilities against ``segment_anything.utils.amg``."""

import numpy as np
import pytest
import torch

from mmsam.structures import (
    batched_mask_to_box,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    build_point_grid,
    calculate_stability_score,
    coco_rle_area,
    coco_rle_to_mask,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle,
    masks_to_boxes,
    masks_to_coco_rle,
    remove_small_regions,
    rle_area,
    rle_to_mask,
    uncompressed_to_coco_rle,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)

amg = pytest.importorskip('segment_anything.utils.amg')


def random_masks(n=6, h=23, w=17, seed=0) -> torch.Tensor:
    """Blobby random masks plus the edge cases: empty, full, first pixel set."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand((n, 1, h // 4 + 1, w // 4 + 1), generator=gen)
    masks = torch.nn.functional.interpolate(noise, (h, w), mode='bilinear')[:, 0] > 0.5
    masks[0] = False
    masks[1] = True
    masks[2, 0, 0] = True
    masks[3, 0, 0] = False
    masks[4] = False
    masks[4, h - 1, w - 1] = True  # only the last pixel
    return masks


def test_mask_to_rle_matches_official_and_round_trips():
    masks = random_masks()
    ours = mask_to_rle(masks)
    ref = amg.mask_to_rle_pytorch(masks)
    assert ours == ref
    for rle, mask in zip(ours, masks.numpy()):
        assert all(isinstance(c, int) for c in rle['counts'])
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
        np.testing.assert_array_equal(rle_to_mask(rle), amg.rle_to_mask(rle))
        assert rle_area(rle) == amg.area_from_rle(rle) == int(mask.sum())
    assert mask_to_rle(torch.zeros((0, 4, 5), dtype=torch.bool)) == []
    assert mask_to_rle(masks.numpy()) == ref  # numpy input too


def test_coco_rle_matches_official():
    masks = random_masks(seed=1)
    rles = mask_to_rle(masks)
    coco = [uncompressed_to_coco_rle(r) for r in rles]
    assert coco == [amg.coco_encode_rle(r) for r in rles]
    assert masks_to_coco_rle(masks) == coco
    assert all(isinstance(c['counts'], str) for c in coco)
    for c, m in zip(coco, masks.numpy()):
        np.testing.assert_array_equal(coco_rle_to_mask(c), m)
        as_bytes = dict(c, counts=c['counts'].encode())
        np.testing.assert_array_equal(coco_rle_to_mask(as_bytes), m)
    np.testing.assert_array_equal(coco_rle_area(coco), masks.sum((1, 2)).numpy())
    # an uncompressed RLE is decoded too
    np.testing.assert_array_equal(coco_rle_to_mask(rles[2]), masks[2].numpy())
    assert masks_to_coco_rle(np.zeros((0, 3, 3), bool)) == []


def test_coco_rle_equals_mmdet_encode_mask_results():
    from mmdet.structures.mask import encode_mask_results

    masks = random_masks(seed=2).numpy()
    ref = encode_mask_results(list(masks))  # mmdet's per-mask pycocotools encoding
    ours = masks_to_coco_rle(masks)  # one pycocotools call for all masks
    assert [dict(r, counts=r['counts'].decode()) for r in ref] == ours


def test_rle_errors():
    with pytest.raises(ValueError, match='counts sum to 5'):
        rle_to_mask({'size': [2, 3], 'counts': [1, 4]})
    with pytest.raises(ValueError, match=r'\(N, H, W\)'):
        mask_to_rle(torch.zeros(3, 3, dtype=torch.bool))


def test_boxes_match_official():
    masks = random_masks(n=8, h=31, w=29, seed=2)
    ref = amg.batched_mask_to_box(masks)
    ours = batched_mask_to_box(masks)
    assert ours.dtype == ref.dtype == torch.int64
    assert torch.equal(ours, ref)
    assert ours[0].tolist() == [0, 0, 0, 0]
    assert ours[4].tolist() == [28, 30, 28, 30]
    stacked = masks.reshape(2, 4, 31, 29)
    assert torch.equal(batched_mask_to_box(stacked), amg.batched_mask_to_box(stacked))
    assert batched_mask_to_box(torch.zeros((0, 5, 5), dtype=torch.bool)).shape == (0, 4)
    xywh = box_xyxy_to_xywh(ours)
    for i in range(len(ours)):
        assert torch.equal(xywh[i], amg.box_xyxy_to_xywh(ours[i]))


def test_stability_score_matches_official():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn((5, 40, 30), generator=gen) * 3
    logits[4] = -10.0  # empty at both thresholds: NaN as in the official code
    ours = calculate_stability_score(logits, 0.0, 1.0)
    ref = amg.calculate_stability_score(logits, 0.0, 1.0)
    assert ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, equal_nan=True, rtol=0, atol=0)
    assert torch.isnan(ours[4])


@pytest.mark.parametrize('size', [(120, 200), (1000, 750), (31, 1)])
@pytest.mark.parametrize('layers', [0, 1, 2])
def test_grids_and_crop_boxes_match_official(size, layers):
    assert generate_crop_boxes(size, layers, 512 / 1500) == amg.generate_crop_boxes(
        size, layers, 512 / 1500
    )
    ours = build_all_layer_point_grids(16, layers, 2)
    ref = amg.build_all_layer_point_grids(16, layers, 2)
    assert len(ours) == len(ref) == layers + 1
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(build_point_grid(3), amg.build_point_grid(3))


def test_uncrop_and_edges_match_official():
    gen = torch.Generator().manual_seed(4)
    crop = [100, 50, 300, 250]
    image_box = [0, 0, 300, 400]
    inside = [50, 50, 150, 150]  # far from every edge
    at_crop_edge = [2, 60, 100, 100]  # x1 at the crop's left edge, inside the image
    at_image_edge = [100, 100, 199, 120]  # x2 at the crop's right edge = the image's
    corners = torch.randint(0, 200, (20, 2, 2), generator=gen).sort(dim=1).values
    boxes = torch.cat(
        [torch.tensor([inside, at_crop_edge, at_image_edge]), corners.transpose(1, 2).flatten(1)]
    )
    assert torch.equal(uncrop_boxes_xyxy(boxes, crop), amg.uncrop_boxes_xyxy(boxes, crop))
    points = torch.rand((7, 2), generator=gen, dtype=torch.float64) * 50
    assert torch.equal(uncrop_points(points, crop), amg.uncrop_points(points, crop))
    edge = is_box_near_crop_edge(boxes, crop, image_box)
    assert torch.equal(edge, amg.is_box_near_crop_edge(boxes, crop, image_box))
    assert edge[:3].tolist() == [False, True, False]
    masks = random_masks(n=5, h=200, w=200)
    assert torch.equal(uncrop_masks(masks, crop, 400, 300), amg.uncrop_masks(masks, crop, 400, 300))
    assert uncrop_masks(masks, [0, 0, 70, 60], 60, 70) is masks


@pytest.mark.parametrize('mode', ['holes', 'islands'])
@pytest.mark.parametrize('area', [3, 20, 400])
def test_remove_small_regions_matches_official(mode, area):
    for mask in random_masks(n=6, h=40, w=36, seed=5).numpy():
        mask = mask.copy()
        mask[5:8, 5:8] = ~mask[5:8, 5:8]  # a small hole or island
        ours, changed = remove_small_regions(mask, area, mode)
        ref, ref_changed = amg.remove_small_regions(mask, area, mode)
        assert changed == ref_changed
        np.testing.assert_array_equal(ours, ref)
    with pytest.raises(ValueError, match='holes'):
        remove_small_regions(mask, 10, 'blobs')


@pytest.mark.parametrize('image_size', [256, 1024])
@pytest.mark.parametrize('hw', [(768, 1024), (1024, 768), (120, 200), (300, 90), (1500, 2000)])
def test_upscale_mask_logits_equals_official_postprocess(image_size, hw):
    from types import SimpleNamespace

    from segment_anything.modeling import Sam

    from mmsam.structures import get_preprocess_shape, upscale_mask_logits

    fake_sam = SimpleNamespace(image_encoder=SimpleNamespace(img_size=image_size))
    gen = torch.Generator().manual_seed(hw[0])
    low = torch.randn((2, 3, image_size // 4, image_size // 4), generator=gen) * 5
    input_size = get_preprocess_shape(*hw, image_size)
    ref = Sam.postprocess_masks(fake_sam, low, input_size, hw)
    ours = upscale_mask_logits(low, image_size, input_size, hw)
    assert ours.shape == (2, 3, *hw)
    assert torch.equal(ours, ref)  # bit for bit


def test_masks_to_boxes_mmdet_convention():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 17, 23)) > 0.97
    masks[0] = False  # an empty mask gets an all-zero box
    masks[1] = False
    masks[1, 16, 22] = True  # a single corner pixel
    boxes = masks_to_boxes(torch.from_numpy(masks))
    assert boxes.dtype == torch.float32
    for mask, box in zip(masks, boxes.tolist()):
        ys, xs = np.nonzero(mask)
        expected = (
            [0, 0, 0, 0] if len(xs) == 0 else [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        )
        assert box == expected
