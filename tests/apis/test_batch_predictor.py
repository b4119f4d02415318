"""Batched encoding and ragged prompts give what one image at a time gives."""

import numpy as np
import pytest
import torch

from mmsam.apis import AutomaticMaskGenerator, SAMPredictor
from mmsam.apis.batch_predictor import BatchSAMPredictor, ImageEmbedding, encode_images
from mmsam.structures import rle_to_mask
from mmsam.testing import build_sam_pair, smooth_image

IMG_SIZE = 256
#: a batched matrix product may round differently from a single one on some CPUs
ATOL = 1e-4


@pytest.fixture(scope='module')
def model():
    _, ours = build_sam_pair('tiny', img_size=IMG_SIZE, window_size=4, seed=1)
    return ours


@pytest.fixture(scope='module')
def images():
    sizes = [(120, 200), (256, 100), (90, 90), (200, 150), (64, 256)]
    return [smooth_image(h, w, seed=10 + i) for i, (h, w) in enumerate(sizes)]


@pytest.fixture(scope='module')
def singles(model, images):
    predictor = SAMPredictor(model)
    out = []
    for image in images:
        predictor.set_image(image)
        out.append((predictor.features.clone(), predictor.original_size, predictor.input_size))
    return out


def _assert_masks_close(ref, out, ref_logits):
    """Same boolean masks, except where the one-image logit sits at the threshold."""
    differ = ref != out
    if differ.any():
        assert np.abs(ref_logits[differ]).max() < 1e-3, f'{differ.sum()} mask pixels differ'


@pytest.mark.parametrize('batch_size', [1, 2, 5])
def test_encode_images_equals_one_at_a_time(model, images, singles, batch_size):
    out = list(encode_images(model, iter(images), batch_size=batch_size))
    assert len(out) == len(images)
    for item, (features, original_size, input_size) in zip(out, singles):
        assert isinstance(item, ImageEmbedding)
        assert item.embedding.shape == (1, 256, IMG_SIZE // 16, IMG_SIZE // 16)
        assert item.original_size == original_size
        assert item.input_size == input_size
        torch.testing.assert_close(item.embedding, features, atol=ATOL, rtol=0)


def test_encode_images_bgr_and_bad_batch_size(model, images, singles):
    bgr = [image[..., ::-1] for image in images[:2]]
    out = list(encode_images(model, bgr, batch_size=2, image_format='BGR'))
    torch.testing.assert_close(out[1].embedding, singles[1][0], atol=ATOL, rtol=0)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match='batch_size must be an integer >= 1'):
            list(encode_images(model, images, batch_size=bad))


def test_ragged_prompts_equal_predictor(model, images):
    rng = np.random.default_rng(0)
    boxes, coords, labels = [], [], []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        n = [3, 0, 1, 2, 2][i]
        xy = rng.uniform(0, 1, size=(n, 2, 2)) * [w - 1, h - 1]
        boxes.append(np.concatenate([xy.min(1), xy.max(1)], axis=1))
        coords.append(rng.uniform(0, 1, size=(n, 2, 2)) * [w - 1, h - 1])
        labels.append(rng.integers(0, 2, size=(n, 2)))
    # image 2: one unbatched box prompt, no points
    boxes[2], coords[2], labels[2] = boxes[2][0], None, None

    batch = BatchSAMPredictor(model, batch_size=3)
    batch.set_images(images)
    assert batch.num_images == len(images)
    results = batch.predict_batch(point_coords=coords, point_labels=labels, boxes=boxes)

    single = SAMPredictor(model)
    for i, image in enumerate(images):
        single.set_image(image)
        ref_logits, ref_scores, ref_low_res = single.predict(
            coords[i], labels[i], boxes[i], return_logits=True
        )
        masks, scores, low_res = results[i]
        assert masks.shape == ref_logits.shape and masks.dtype == bool
        _assert_masks_close(ref_logits > model.mask_threshold, masks, ref_logits)
        np.testing.assert_allclose(scores, ref_scores, atol=ATOL, rtol=0)
        np.testing.assert_allclose(low_res, ref_low_res, atol=ATOL, rtol=0)
    assert results[1][0].shape == (0, 3, *images[1].shape[:2])
    assert results[2][0].shape == (3, *images[2].shape[:2])


def test_predict_batch_errors(model, images):
    batch = BatchSAMPredictor(model)
    with pytest.raises(RuntimeError, match='no images are set'):
        batch.predict_batch(boxes=[np.zeros(4)])
    batch.set_images(images[:2])
    with pytest.raises(ValueError, match=r'one entry \(or None\) per set image \(2\), got 1'):
        batch.predict_batch(boxes=[np.zeros(4)])
    with pytest.raises(ValueError, match='got an array of shape'):
        batch.predict_batch(boxes=np.zeros((2, 4)))
    with pytest.raises(ValueError, match='image 1: box must be XYXY'):
        batch.predict_batch(boxes=[np.zeros(4), np.array([5.0, 5.0, 1.0, 1.0])])
    with pytest.raises(TypeError, match='embeddings\\[0\\] must be an ImageEmbedding'):
        batch.set_image_embeddings([torch.zeros(1, 256, 16, 16)])
    # embeddings given back are used as they are
    embeddings = list(encode_images(model, images[:2]))
    batch.set_image_embeddings(embeddings)
    batch.predict_batch(boxes=[np.array([1.0, 2.0, 30.0, 40.0]), None])


def test_amg_generate_batch_equals_generate(model, images):
    # five crops per image (one layer of crops), encoded in batches of 3 that cross
    # images: a crop given another crop's embedding changes the records. No score filters:
    # every decoded mask reaches NMS, so a last-bit difference of a batched product
    # cannot move a mask across a threshold
    amg = AutomaticMaskGenerator(
        model,
        points_per_side=2,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        crop_n_layers=1,
        output_mode='uncompressed_rle',
    )
    subset = [images[0], images[2]]
    batched = amg.generate_batch(subset, batch_size=3)
    assert len(batched) == len(subset)
    for image, records in zip(subset, batched):
        ref = amg.generate(image)
        assert len(records) == len(ref) > 0
        for r, o in zip(ref, records):
            assert o['crop_box'] == r['crop_box']
            assert o['point_coords'] == r['point_coords']
            np.testing.assert_allclose(o['predicted_iou'], r['predicted_iou'], atol=ATOL)
            np.testing.assert_allclose(o['stability_score'], r['stability_score'], atol=1e-2)
            a, b = rle_to_mask(r['segmentation']), rle_to_mask(o['segmentation'])
            assert (a != b).mean() < 1e-3
