"""Tiled segmentation of large images (mmsam.apis.tiled_segmentation) and lazy TIFF reading.

A random-weight SAM gives noise masks, so the merge is checked with an oracle segmenter
whose answer is known: the connected component (of one colour) under a prompt, and every
such component for "everything". On a synthetic image with objects across tile borders,
the merged masks must equal the objects (IoU 1: the oracle is exact and the merge must
lose nothing) and match a direct run on a 2x downscaled copy to IoU > 0.9 (its masks are
blockier at the borders). A seeded tiny SAM checks the SAM path: an image that fits in
one tile gives exactly the direct predictor / generator results, and prompts in a
multi-tile image are routed (each gets one mask, equal to the predictor's on its tile).
"""

import numpy as np
import pytest
import tifffile
from pycocotools import mask as mask_api
from scipy import ndimage

from mmsam.apis.mask_generator import AutomaticMaskGenerator
from mmsam.apis.predictor import SAMPredictor
from mmsam.apis.region_reader import ImageReadError, open_region_reader
from mmsam.apis.tiled_segmentation import TiledSegmenter
from mmsam.structures.mask_postprocess import select_best_candidate
from mmsam.structures.rle import coco_rle_to_mask, mask_to_rle
from mmsam.structures.tiles import route_prompt
from mmsam.testing import build_official_sam, official_to_mmsam, smooth_image

TILE, OVERLAP = 256, 64


def _components(image: np.ndarray):
    """Connected components (4-connected) of each non-black colour: ``(labels, count)``."""
    codes = image.astype(np.int64) @ np.array([65536, 256, 1])
    labels = np.zeros(codes.shape, dtype=np.int64)
    count = 0
    for code in np.unique(codes):
        if code == 0:
            continue
        lab, n = ndimage.label(codes == code)
        labels[lab > 0] = lab[lab > 0] + count
        count += n
    return labels, count


class OraclePredictor:
    """``SAMPredictor``'s interface; a point selects its component, a box the component with
    most pixels in it. Three candidates, the right one scored highest."""

    def set_image(self, image):
        self.labels, _ = _components(image)

    def reset_image(self):
        self.labels = None

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
        label = 0
        if point_coords is not None:
            positive = np.asarray(point_coords)[np.asarray(point_labels) == 1]
            if len(positive):
                h, w = self.labels.shape
                x, y = (min(int(v), s - 1) for v, s in zip(positive[0], (w, h)))
                label = self.labels[y, x]
        if label == 0 and box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            inside = self.labels[y0:y1, x0:x1]
            counts = np.bincount(inside.ravel(), minlength=2)
            counts[0] = 0
            label = int(counts.argmax()) if counts.max() > 0 else 0
        mask = self.labels == label if label else np.zeros(self.labels.shape, bool)
        masks = np.stack([np.zeros_like(mask), mask, ~mask])
        scores = np.array([0.5, 0.9, 0.1])
        if not multimask_output:
            return masks[1:2], scores[1:2], None
        return masks, scores, None


class OracleGenerator:
    """``AutomaticMaskGenerator``'s interface: every component, uncompressed RLE."""

    def generate(self, image):
        labels, count = _components(image)
        records = []
        for k in range(1, count + 1):
            mask = labels == k
            ys, xs = np.nonzero(mask)
            records.append(
                {
                    'segmentation': mask_to_rle(mask[None])[0],
                    'area': int(mask.sum()),
                    'bbox': [int(xs.min()), int(ys.min()), int(np.ptp(xs)), int(np.ptp(ys))],
                    'predicted_iou': 0.9,
                    'point_coords': [[float(xs[0]), float(ys[0])]],
                    'stability_score': 1.0,
                    'crop_box': [0, 0, image.shape[1], image.shape[0]],
                }
            )
        return records


def _scene():
    """A 600 x 900 image (15 tiles of 256 with overlap >= 64) and its objects' masks."""
    h, w = 600, 900
    image = np.zeros((h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    shapes = [
        (yy >= 100) & (yy < 160) & (xx >= 120) & (xx < 260),  # across a vertical border
        (yy - 190) ** 2 + (xx - 210) ** 2 < 45**2,  # over the corner of four tiles
        (yy >= 300) & (yy < 320) & (xx >= 20) & (xx < 880),  # a band over five tiles
        (yy >= 360) & (yy < 560) & (xx >= 330) & (xx < 560),  # larger than the overlap
        (yy >= 200) & (yy < 230) & (xx >= 370) & (xx < 400),  # inside an overlap zone
        (yy >= 30) & (yy < 60) & (xx >= 40) & (xx < 80),  # inside one tile
        (yy - 450) ** 2 / 60**2 + (xx - 760) ** 2 / 110**2 < 1,  # an ellipse over borders
    ]
    masks = []
    for i, shape in enumerate(shapes):
        image[shape] = (40 + 30 * i, 255 - 25 * i, 90 + 20 * i)
    for i, _ in enumerate(shapes):
        colour = (40 + 30 * i, 255 - 25 * i, 90 + 20 * i)
        masks.append((image == colour).all(-1))
    return image, masks


def _decode(record):
    return coco_rle_to_mask(record['segmentation'])


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_oracle_everything_merges_objects_across_tiles():
    image, objects = _scene()
    tiler = TiledSegmenter(TILE, OVERLAP)
    assert len(tiler.tiles(*image.shape[:2])) == 15
    records = tiler.generate(image, OracleGenerator())
    masks = [_decode(r) for r in records]
    assert len(masks) == len(objects)
    for obj in objects:
        best = max(_iou(obj, m) for m in masks)
        assert best == 1.0
    for record, mask in zip(records, masks):
        assert record['area'] == int(mask.sum())
        ys, xs = np.nonzero(mask)
        assert record['bbox'] == [xs.min(), ys.min(), np.ptp(xs), np.ptp(ys)]
        assert mask_api.area(record['segmentation']) == record['area']

    # against a direct run on a 2x downscaled copy, masks upscaled (nearest)
    direct = OracleGenerator().generate(image[::2, ::2])
    direct_masks = [
        np.repeat(np.repeat(coco_rle_to_mask(_coco(r['segmentation'])), 2, 0), 2, 1) for r in direct
    ]
    assert len(direct_masks) == len(masks)
    for mask in masks:
        assert max(_iou(mask, d) for d in direct_masks) > 0.9


def _coco(uncompressed):
    h, w = uncompressed['size']
    return mask_api.frPyObjects(uncompressed, h, w)


def test_oracle_prompts_are_routed_and_unioned():
    image, objects = _scene()
    oracle = OraclePredictor()
    prompts = [
        {'point_coords': [[150, 130]]},  # object 0, one tile
        {'point_coords': [[210, 190]], 'point_labels': [1]},  # the disc
        {'box': [20, 300, 880, 320]},  # the band: no tile holds it, split over five
        {'point_coords': [[440, 460], [100, 100]], 'point_labels': [1, 0]},
        {'point_coords': [[30, 302], [870, 318]]},  # two points at both ends of the band
        {'point_coords': [[450, 310]]},  # one point on the band: followed over five tiles
    ]
    tiler = TiledSegmenter(TILE, OVERLAP)
    records = tiler.segment_prompts(image, oracle, prompts)
    assert len(records) == len(prompts)
    # object 0 crosses the only tile that holds its point (x 0..256): followed into the
    # next one; the two points of prompt 4 lie in the first and last tile column (a split
    # prompt: answered there only)
    band_ends = (np.arange(900) < 256) | (np.arange(900) >= 644)
    expected = [*objects[:4], objects[2] & band_ends, objects[2]]
    for record, obj in zip(records, expected):
        assert _iou(_decode(record), obj) == 1.0
    assert not any(r['cut'] for r in records)
    assert len(records[0]['tiles']) == 2 and len(records[2]['tiles']) == 5
    assert records[2]['crop_box'] == [0, 172, 900, 256]
    assert len(records[4]['tiles']) == 2 and len(records[5]['tiles']) == 5
    # not followed: the mask stops at the tile's edge, and says so
    unfollowed = TiledSegmenter(TILE, OVERLAP, max_prompt_tiles=1)
    (record,) = unfollowed.segment_prompts(image, oracle, prompts[:1])
    x0, y0, x1, y1 = unfollowed.tiles(600, 900)[0]
    in_tile = np.zeros((600, 900), dtype=bool)
    in_tile[y0:y1, x0:x1] = True
    assert _iou(_decode(record), objects[0] & in_tile) == 1.0 and record['cut']
    # followed over three tiles at most: the band is cut
    (record,) = TiledSegmenter(TILE, OVERLAP, max_prompt_tiles=3).segment_prompts(
        image, oracle, prompts[5:]
    )
    assert len(record['tiles']) == 3 and record['cut']
    # a zero-width box over three tile rows is clipped to each of them: one record
    (record,) = tiler.segment_prompts(image, oracle, [{'box': [40, 100, 40, 500]}])
    assert len(record['tiles']) == 3
    with pytest.raises(ValueError, match='outside'):
        TiledSegmenter(TILE, OVERLAP).segment_prompts(image, oracle, [{'box': [0, 0, 901, 5]}])
    with pytest.raises(ValueError, match='foreground point'):
        TiledSegmenter(TILE, OVERLAP).segment_prompts(
            image, oracle, [{'point_coords': [[5, 5]], 'point_labels': [0]}]
        )


@pytest.fixture(scope='module')
def tiny_sam():
    official = build_official_sam('tiny', img_size=256, window_size=4, seed=1)
    return official_to_mmsam(official, 'tiny', window_size=4)


def test_one_tile_sam_generator_equals_direct(tiny_sam):
    image = smooth_image(200, 230, seed=5)
    settings = dict(
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,  # random weights: near-identical masks, keep them all
        output_mode='coco_rle',
    )
    direct = AutomaticMaskGenerator(tiny_sam, **settings).generate(image)
    tiled = TiledSegmenter(256, 64).generate(image, AutomaticMaskGenerator(tiny_sam, **settings))
    assert len(direct) >= 3
    assert tiled == direct


def test_sam_prompts_one_tile_equal_direct_and_are_routed(tiny_sam):
    predictor = SAMPredictor(tiny_sam)
    image = smooth_image(200, 230, seed=6)
    prompts = [
        {'point_coords': [[50, 60]], 'point_labels': [1]},
        {'box': [10, 20, 150, 120]},
        {'point_coords': [[100, 100], [20, 20]], 'point_labels': [1, 0], 'box': [60, 50, 200, 190]},
    ]
    records = TiledSegmenter(256, 64).segment_prompts(image, predictor, prompts)
    predictor.set_image(image)
    for prompt, record in zip(prompts, records):
        single = 'box' not in prompt and len(prompt['point_coords']) == 1
        masks, scores, _ = predictor.predict(**prompt, multimask_output=single)
        _, score, mask = select_best_candidate(scores[None], masks[None])
        np.testing.assert_array_equal(_decode(record), mask[0])
        assert record['predicted_iou'] == float(score[0])

    # a multi-tile image: every prompt gets one mask, that of the predictor on its tile
    # (not followed: random weights give masks that touch every edge)
    big = smooth_image(420, 500, seed=7)
    tiler = TiledSegmenter(256, 64, max_prompt_tiles=1)
    tiles = tiler.tiles(420, 500)
    prompts = [{'point_coords': [[x, y]]} for x, y in ((30, 40), (250, 210), (480, 400))]
    records = tiler.segment_prompts(big, predictor, prompts)
    assert len(records) == 3
    for prompt, record in zip(prompts, records):
        (t,), split = route_prompt([*prompt['point_coords'][0]] * 2, tiles, 420, 500)
        assert not split and record['tiles'] == [[int(tiles[t][0]), int(tiles[t][1]), 256, 256]]
        x0, y0, x1, y1 = tiles[t]
        predictor.set_image(big[y0:y1, x0:x1])
        local = np.array(prompt['point_coords']) - [x0, y0]
        masks, scores, _ = predictor.predict(point_coords=local, point_labels=[1])
        _, _, mask = select_best_candidate(scores[None], masks[None])
        full = np.zeros((420, 500), dtype=bool)
        full[y0:y1, x0:x1] = mask[0]
        np.testing.assert_array_equal(_decode(record), full)


@pytest.mark.parametrize(
    'layout',
    [
        dict(tile=(64, 48), compression='zlib'),
        dict(rowsperstrip=7, compression='zlib'),
        dict(),  # uncompressed, one strip: memory-mapped
        dict(tile=(32, 32), planarconfig='separate'),
        dict(rowsperstrip=16, compression='lzma'),
    ],
    ids=['tiled', 'strips', 'memmap', 'planar', 'lzma'],
)
def test_lazy_tiff_region_equals_the_whole_array(tmp_path, layout):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (150, 170, 3), dtype=np.uint8)
    path = str(tmp_path / 'big.tif')
    data = np.moveaxis(image, 2, 0) if layout.get('planarconfig') == 'separate' else image
    tifffile.imwrite(path, data, photometric='rgb', **layout)
    reader = open_region_reader(path)
    try:
        assert reader.lazy and 'lazily' in reader.description
        for box in ([0, 0, 170, 150], [33, 17, 101, 149], [169, 0, 170, 1]):
            x0, y0, x1, y1 = box
            np.testing.assert_array_equal(reader.read(box), image[y0:y1, x0:x1])
        with pytest.raises(ValueError, match='not a non-empty part'):
            reader.read([0, 0, 171, 10])
    finally:
        reader.close()


def test_lazy_tiff_grayscale_16_bit_and_fallbacks(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 65536, (90, 110), dtype=np.uint16)
    path = str(tmp_path / 'gray16.tif')
    tifffile.imwrite(path, gray, tile=(32, 32), compression='zlib')
    reader = open_region_reader(path)
    expected = ((gray[10:80, 5:100].astype(np.uint32) + 128) // 257).astype(np.uint8)
    np.testing.assert_array_equal(reader.read([5, 10, 100, 80]), np.dstack([expected] * 3))
    reader.close()
    # float samples: scaled by the whole image's range, so not lazily; Pillow cannot either
    bad = str(tmp_path / 'float.tif')
    tifffile.imwrite(bad, np.dstack([gray] * 3).astype(np.float32), photometric='rgb')
    with pytest.raises(ImageReadError, match='float.tif.*32-bit samples'):
        open_region_reader(bad)
    # another format is read whole, and says so
    from PIL import Image

    png = str(tmp_path / 'small.png')
    Image.fromarray(np.dstack([gray.astype(np.uint8)] * 3)).save(png)
    reader = open_region_reader(png)
    assert not reader.lazy and 'not a TIFF' in reader.description
    # a whole image through the tiler equals the array's result
    image, _ = _scene()
    tif = str(tmp_path / 'scene.tif')
    tifffile.imwrite(tif, image, tile=(128, 128), compression='zlib')
    tiler = TiledSegmenter(TILE, OVERLAP)
    assert tiler.generate(tif, OracleGenerator()) == tiler.generate(image, OracleGenerator())
