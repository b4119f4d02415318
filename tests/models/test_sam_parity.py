"""Parity of mmsam's SAM with the official ``segment_anything`` on the same random weights."""

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmsam.structures.transforms import apply_boxes, apply_coords
from mmsam.testing import build_sam_pair, smooth_image

segment_anything = pytest.importorskip('segment_anything')
from segment_anything.utils.transforms import ResizeLongestSide  # noqa: E402

ATOL = 1e-4


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return 0.0 if a.numel() == 0 else (a - b).abs().max().item()


@pytest.fixture(scope='module')
def pair():
    official, ours = build_sam_pair('tiny', seed=0)
    return official, ours


def _official_embed(official, image):
    transform = ResizeLongestSide(official.image_encoder.img_size)
    resized = transform.apply_image(image)
    x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
    x = official.preprocess(x)
    with torch.no_grad():
        return x, official.image_encoder(x), resized.shape[:2]


def _our_embed(model, image):
    x, input_size = model.data_preprocessor.preprocess_image(
        torch.from_numpy(image).permute(2, 0, 1)
    )
    with torch.no_grad():
        return x[None], model.extract_feat(x[None])[0], input_size


@pytest.mark.parametrize('hw', [(480, 640), (1200, 800), (32, 48)])
def test_image_embeddings_match(pair, hw):
    official, ours = pair
    image = smooth_image(*hw, seed=hw[0])
    ref_x, ref_emb, ref_size = _official_embed(official, image)
    x, emb, size = _our_embed(ours, image)
    assert tuple(size) == tuple(ref_size)
    assert torch.equal(x, ref_x), 'preprocessed inputs differ'
    assert emb.shape == ref_emb.shape == (1, 256, 64, 64)
    assert _maxdiff(emb, ref_emb) <= ATOL
    assert ref_emb.std() > 0.1  # the comparison is not between near-constant maps


def test_grayscale_converted_by_caller(pair):
    official, ours = pair
    gray = smooth_image(300, 200, seed=3)[..., :1]
    image = np.repeat(gray, 3, axis=2)
    _, ref_emb, _ = _official_embed(official, image)
    _, emb, _ = _our_embed(ours, image)
    assert _maxdiff(emb, ref_emb) <= ATOL


def _prompt_cases(original_size, rng):
    h, w = original_size
    pts1 = np.array([[w * 0.4, h * 0.5]])
    pts3 = np.array([[w * 0.3, h * 0.3], [w * 0.6, h * 0.7], [w * 0.1, h * 0.9]])
    box = np.array([w * 0.2, h * 0.25, w * 0.7, h * 0.8])
    return {
        'one_point': dict(point_coords=pts1, point_labels=np.array([1])),
        'points_with_negatives': dict(point_coords=pts3, point_labels=np.array([1, 0, 1])),
        'box': dict(box=box),
        'box_and_points': dict(point_coords=pts3[:2], point_labels=np.array([1, 0]), box=box),
        'mask_input': dict(
            point_coords=pts1,
            point_labels=np.array([1]),
            mask_input=rng.normal(0, 4, size=(1, 256, 256)).astype(np.float32),
        ),
        'no_prompt': dict(),
    }


def _to_tensors(case, original_size, img_size=1024):
    points = boxes = masks = None
    if 'point_coords' in case:
        coords = apply_coords(case['point_coords'], original_size, img_size)
        points = (
            torch.as_tensor(coords, dtype=torch.float32)[None],
            torch.as_tensor(case['point_labels'], dtype=torch.int)[None],
        )
    if 'box' in case:
        boxes = torch.as_tensor(
            apply_boxes(case['box'], original_size, img_size), dtype=torch.float32
        )
    if 'mask_input' in case:
        masks = torch.as_tensor(case['mask_input'])[None]
    return points, boxes, masks


@pytest.mark.parametrize(
    'case_name',
    ['one_point', 'points_with_negatives', 'box', 'box_and_points', 'mask_input', 'no_prompt'],
)
@pytest.mark.parametrize('multimask', [True, False])
def test_prompt_embeddings_and_decoder_match(pair, case_name, multimask):
    official, ours = pair
    original_size = (480, 640)
    case = _prompt_cases(original_size, np.random.default_rng(1))[case_name]
    points, boxes, masks = _to_tensors(case, original_size)
    image = smooth_image(*original_size)
    _, ref_emb, input_size = _official_embed(official, image)
    _, emb, _ = _our_embed(ours, image)

    with torch.no_grad():
        ref_sparse, ref_dense = official.prompt_encoder(points=points, boxes=boxes, masks=masks)
        sparse, dense = ours.prompt_encoder(points=points, boxes=boxes, masks=masks)
        assert sparse.shape == ref_sparse.shape
        assert _maxdiff(sparse, ref_sparse) <= ATOL
        assert _maxdiff(dense, ref_dense) <= ATOL
        assert torch.allclose(
            ours.prompt_encoder.get_dense_pe(), official.prompt_encoder.get_dense_pe(), atol=1e-6
        )

        ref_logits, ref_iou = official.mask_decoder(
            image_embeddings=ref_emb,
            image_pe=official.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=ref_sparse,
            dense_prompt_embeddings=ref_dense,
            multimask_output=multimask,
        )
        logits, iou = ours.predict_prompts(emb, points, boxes, masks, multimask_output=multimask)
    assert logits.shape == ref_logits.shape == (1, 3 if multimask else 1, 256, 256)
    assert _maxdiff(logits, ref_logits) <= ATOL
    assert _maxdiff(iou, ref_iou) <= ATOL

    # full-size masks
    ref_masks = official.postprocess_masks(ref_logits, input_size, original_size)
    our_masks = ours.postprocess_masks(logits, input_size, original_size)
    _assert_masks_match(our_masks, ref_masks)


def _assert_masks_match(logits, ref_logits, threshold=0.0):
    assert logits.shape == ref_logits.shape
    ours = logits > threshold
    ref = ref_logits > threshold
    differ = ours != ref
    near = (ref_logits - threshold).abs() <= ATOL
    assert not (differ & ~near).any(), f'{int((differ & ~near).sum())} mask pixels differ'
    # the reference masks are varied: neither empty nor full
    frac = ref.float().mean().item()
    assert 0.01 < frac < 0.99, f'reference masks are degenerate (foreground fraction {frac:.3f})'


def test_batched_64_boxes_one_call(pair):
    official, ours = pair
    original_size = (1200, 800)
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 1, size=(64, 2, 2)) * np.array([800, 1200])
    boxes_np = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1)
    boxes = torch.as_tensor(apply_boxes(boxes_np, original_size, 1024), dtype=torch.float32)
    image = smooth_image(*original_size, seed=5)
    _, ref_emb, input_size = _official_embed(official, image)
    _, emb, _ = _our_embed(ours, image)
    with torch.no_grad():
        sparse, dense = official.prompt_encoder(points=None, boxes=boxes, masks=None)
        ref_logits, ref_iou = official.mask_decoder(
            image_embeddings=ref_emb,
            image_pe=official.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        calls = []
        handle = ours.mask_decoder.register_forward_hook(lambda *a: calls.append(1))
        logits, iou = ours.predict_prompts(emb, None, boxes, None, multimask_output=True)
        handle.remove()
    assert len(calls) == 1, 'batched prompts must run in one decoder call'
    assert logits.shape == (64, 3, 256, 256)
    assert _maxdiff(logits, ref_logits) <= ATOL
    assert _maxdiff(iou, ref_iou) <= ATOL


def _data_sample(gt: InstanceData) -> DetDataSample:
    sample = DetDataSample()
    sample.gt_instances = gt
    return sample


@pytest.mark.parametrize('hw', [(480, 640), (1200, 800), (32, 48)])
def test_predict_with_data_samples_matches_official_forward(pair, hw):
    """The mmdet path (preprocessor + predict) equals the official ``Sam.forward``."""
    official, ours = pair
    image = smooth_image(*hw, seed=11)
    h, w = hw
    rng = np.random.default_rng(2)
    boxes = np.array([[0.1 * w, 0.1 * h, 0.6 * w, 0.7 * h], [0.3 * w, 0.2 * h, 0.9 * w, 0.95 * h]])
    points = rng.uniform(0, 1, size=(2, 3, 2)) * np.array([w, h])
    labels = np.array([[1, 0, 1], [1, 1, 0]])

    transform = ResizeLongestSide(1024)
    resized = transform.apply_image(image)
    ref_in = dict(
        image=torch.as_tensor(resized).permute(2, 0, 1).contiguous(),
        original_size=hw,
        point_coords=torch.as_tensor(transform.apply_coords(points, hw), dtype=torch.float),
        point_labels=torch.as_tensor(labels, dtype=torch.int),
        boxes=torch.as_tensor(transform.apply_boxes(boxes, hw), dtype=torch.float),
    )
    with torch.no_grad():
        ref = official([ref_in], multimask_output=True)[0]

    gt = InstanceData(
        bboxes=torch.as_tensor(boxes, dtype=torch.float32),
        points=torch.as_tensor(points, dtype=torch.float32),
        point_labels=torch.as_tensor(labels),
        labels=torch.tensor([3, 7]),
    )
    data = dict(inputs=[torch.from_numpy(image).permute(2, 0, 1)], data_samples=[_data_sample(gt)])
    ours.data_preprocessor.bgr_to_rgb = False
    # three outputs for box + points prompts, as the reference call above (the paper's
    # protocol, the default, is tested in test_sam_prompt_protocol.py)
    ours.test_cfg['multimask_output'] = True
    try:
        with torch.no_grad():
            out = ours.test_step(data)[0]
    finally:
        ours.test_cfg['multimask_output'] = 'auto'
    pred = out.pred_instances
    assert pred.multimask_masks.shape == (2, 3, h, w)
    assert _maxdiff(pred.mask_logits, ref['low_res_logits']) <= ATOL
    assert _maxdiff(pred.multimask_scores, ref['iou_predictions']) <= ATOL
    ref_full = official.postprocess_masks(ref['low_res_logits'], resized.shape[:2], hw)
    differ = pred.multimask_masks != ref['masks']
    near = ref_full.abs() <= ATOL
    assert not (differ & ~near).any()
    best = ref['iou_predictions'].argmax(1)
    assert torch.equal(pred.masks, pred.multimask_masks[torch.arange(2), best])
    assert pred.labels.tolist() == [3, 7]
    assert out.metainfo['ori_shape'] == hw
    assert out.metainfo['img_shape'] == tuple(resized.shape[:2])


def test_bgr_input_is_flipped(pair):
    _, ours = pair
    image = smooth_image(64, 96, seed=4)
    rgb = torch.from_numpy(image).permute(2, 0, 1)
    ours.data_preprocessor.bgr_to_rgb = True
    try:
        out = ours.data_preprocessor(dict(inputs=[rgb.flip(0)], data_samples=None))
    finally:
        ours.data_preprocessor.bgr_to_rgb = False
    ref, _ = ours.data_preprocessor.preprocess_image(rgb)
    assert torch.equal(out['inputs'][0], ref)


@pytest.mark.full_size
def test_full_vit_b_matches_official():
    """One full-size ViT-B comparison (random weights, 1024 input)."""
    official, ours = build_sam_pair('base', seed=1)
    image = smooth_image(600, 800, seed=9)
    _, ref_emb, input_size = _official_embed(official, image)
    _, emb, _ = _our_embed(ours, image)
    assert _maxdiff(emb, ref_emb) <= ATOL
    points = (torch.tensor([[[300.0, 400.0], [500.0, 200.0]]]), torch.tensor([[1, 0]]))
    with torch.no_grad():
        s, d = official.prompt_encoder(points=points, boxes=None, masks=None)
        ref_logits, ref_iou = official.mask_decoder(
            image_embeddings=ref_emb,
            image_pe=official.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=s,
            dense_prompt_embeddings=d,
            multimask_output=True,
        )
        logits, iou = ours.predict_prompts(emb, points, None, None, True)
    assert _maxdiff(logits, ref_logits) <= ATOL
    assert _maxdiff(iou, ref_iou) <= ATOL


def test_official_state_dict_loads_directly(pair, tmp_path):
    """An official-layout file loads through torch's and mmengine's loaders (keys mapped)."""
    from mmdet.registry import MODELS
    from mmengine.runner import load_checkpoint

    from mmsam.testing import sam_model_cfg

    official, ours = pair
    fresh = MODELS.build(sam_model_cfg('tiny'))
    fresh.load_state_dict(official.state_dict(), strict=True)
    for key, value in ours.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key

    path = tmp_path / 'sam_official_layout.pth'
    torch.save(official.state_dict(), path)
    fresh2 = MODELS.build(sam_model_cfg('tiny'))
    load_checkpoint(fresh2, str(path), map_location='cpu', strict=True)
    for key, value in ours.state_dict().items():
        assert torch.equal(fresh2.state_dict()[key], value), key
