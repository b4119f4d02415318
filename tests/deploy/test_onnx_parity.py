"""The exported graphs in onnxruntime against mmsam in PyTorch and the official SamOnnxModel."""

import numpy as np
import pytest
import torch

from mmsam.apis import SAMPredictor
from mmsam.deploy import ONNXPredictor, SAMOnnxDecoder, SAMOnnxEncoder
from mmsam.deploy.export import decoder_dummy_inputs
from mmsam.deploy.graph_spec import DECODER_INPUT_NAMES
from mmsam.deploy.onnx_session import CheckedSession
from mmsam.structures import get_preprocess_shape, upscale_mask_logits

LOGIT_ATOL = 1e-3
NEAR_THRESHOLD = 1e-3


def assert_same_masks(onnx_logits: np.ndarray, torch_logits: np.ndarray, threshold: float):
    """Logits within 1e-3, masks identical wherever the reference is not at the threshold."""
    assert onnx_logits.shape == torch_logits.shape
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=LOGIT_ATOL, rtol=0)
    clear = np.abs(torch_logits - threshold) >= NEAR_THRESHOLD
    assert np.array_equal((onnx_logits > threshold)[clear], (torch_logits > threshold)[clear])


@pytest.fixture(scope='module')
def predictors(sam_pair, onnx_files, image):
    """The ONNX decoder and mmsam's predictor on the same (PyTorch) image embedding."""
    ours = SAMPredictor(sam_pair[1])
    ours.set_image(image)
    onnx = ONNXPredictor(onnx_files['decoder'])
    onnx.set_image_embedding(ours.get_image_embedding().numpy(), image.shape[:2])
    assert onnx.input_size == ours.input_size == (175, 256)
    return onnx, ours


PROMPTS = {
    'one point': dict(point_coords=[[60.0, 40.0]], point_labels=[1]),
    'points': dict(point_coords=[[60, 40], [150, 90], [10, 140]], point_labels=[1, 0, 1]),
    'six points': dict(
        point_coords=[[5, 5], [60, 40], [150, 90], [10, 140], [219, 149], [100, 75]],
        point_labels=[1, 0, 1, 1, 0, 1],
    ),
    'box': dict(box=[30, 20, 180, 120]),
    'box + points': dict(
        point_coords=[[60, 40], [150, 90]], point_labels=[1, 0], box=[30, 20, 180, 120]
    ),
    'mask input': dict(mask_input='previous'),
    'mask input + point': dict(point_coords=[[100, 70]], point_labels=[1], mask_input='previous'),
}


@pytest.mark.parametrize('multimask', [True, False], ids=['multimask', 'single-mask'])
@pytest.mark.parametrize('prompt', list(PROMPTS))
def test_predict_matches_pytorch(predictors, prompt, multimask):
    onnx, ours = predictors
    kwargs = dict(PROMPTS[prompt])
    if kwargs.get('mask_input') == 'previous':
        _, _, low_res = ours.predict(point_coords=[[120, 60]], point_labels=[1])
        kwargs['mask_input'] = low_res[:1]
    got = onnx.predict(**kwargs, multimask_output=multimask, return_logits=True)
    want = ours.predict(**kwargs, multimask_output=multimask, return_logits=True)
    channels = 3 if multimask else 1
    assert got[0].shape == (channels, 150, 220)
    assert got[2].shape == (channels, 64, 64)
    threshold = ours.model.mask_threshold
    assert_same_masks(got[0], want[0], threshold)
    assert_same_masks(got[2], want[2], threshold)
    np.testing.assert_allclose(got[1], want[1], atol=LOGIT_ATOL, rtol=0)
    masks, _, _ = onnx.predict(**kwargs, multimask_output=multimask)
    assert masks.dtype == np.bool_
    assert np.array_equal(masks, got[0] > threshold)


def test_set_image_matches_pytorch(predictors, onnx_files, encoder_file, image):
    """Preprocessing in numpy + the encoder graph against SAMPredictor.set_image."""
    onnx = ONNXPredictor(onnx_files['decoder'], encoder_file)
    onnx.set_image(image)
    ours = predictors[1]
    got, want = onnx.get_image_embedding(), ours.get_image_embedding().numpy()
    assert got.shape == want.shape == (1, 256, 16, 16)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert onnx.input_size == ours.input_size == (175, 256)
    kwargs = PROMPTS['box + points']
    masks, scores, _ = onnx.predict(**kwargs, return_logits=True)
    assert_same_masks(masks, ours.predict(**kwargs, return_logits=True)[0], 0.0)


def test_encoder_graph_matches_backbone(sam_pair, encoder_file):
    model = sam_pair[1]
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    want = SAMOnnxEncoder(model)(x).numpy()
    (got,) = CheckedSession(encoder_file).run({'x': x.numpy()}).values()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_preprocess_matches_data_preprocessor(sam_pair, onnx_files, encoder_file, image):
    onnx = ONNXPredictor(onnx_files['decoder'], encoder_file)
    got, input_size = onnx.preprocess(image)
    chw = torch.from_numpy(image).permute(2, 0, 1)
    want, want_size = sam_pair[1].data_preprocessor.preprocess_image(chw)
    assert input_size == tuple(want_size)
    np.testing.assert_allclose(got[0], want.numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize('num_points', [1, 2, 3, 7])
def test_dynamic_points_match_official_onnx_model(sam_pair, onnx_files, num_points):
    """Raw graph feeds, all four tokens, against the official SamOnnxModel."""
    from segment_anything.utils.onnx import SamOnnxModel

    official, model = sam_pair
    inputs = decoder_dummy_inputs(model, num_points)
    feeds = {name: t.numpy() for name, t in zip(DECODER_INPUT_NAMES, inputs)}
    got = CheckedSession(onnx_files['decoder']).run(feeds)
    want = SamOnnxModel(official, return_single_mask=False)(*inputs)
    assert got['masks'].shape == (1, 4, 384, 563)
    assert_same_masks(got['masks'], want[0].numpy(), 0.0)
    np.testing.assert_allclose(got['iou_predictions'], want[1].numpy(), atol=LOGIT_ATOL, rtol=0)
    assert_same_masks(got['low_res_masks'], want[2].numpy(), 0.0)


@pytest.mark.parametrize('num_points', [1, 2, 4])
def test_single_mask_options_match_official(sam_pair, onnx_files, num_points):
    """return_single_mask + use_stability_score + return_extra_metrics."""
    from segment_anything.utils.onnx import SamOnnxModel

    official, model = sam_pair
    inputs = decoder_dummy_inputs(model, num_points)
    feeds = {name: t.numpy() for name, t in zip(DECODER_INPUT_NAMES, inputs)}
    session = CheckedSession(onnx_files['single'])
    assert session.output_names == [
        'masks',
        'iou_predictions',
        'stability_scores',
        'areas',
        'low_res_masks',
    ]
    got = session.run(feeds)
    options = dict(return_single_mask=True, use_stability_score=True, return_extra_metrics=True)
    want = [t.numpy() for t in SamOnnxModel(official, **options)(*inputs)]
    ours = [t.numpy() for t in SAMOnnxDecoder(model, **options)(*inputs)]
    assert got['masks'].shape == (1, 1, 384, 563)
    assert_same_masks(got['masks'], want[0], 0.0)
    assert_same_masks(got['low_res_masks'], want[4], 0.0)
    for i, name in ((1, 'iou_predictions'), (2, 'stability_scores')):
        np.testing.assert_allclose(got[name], ours[i], atol=LOGIT_ATOL, rtol=0)
        np.testing.assert_allclose(got[name], want[i], atol=0.02, rtol=0)  # pixel-count ratios
    near = (np.abs(want[0]) < NEAR_THRESHOLD).sum()
    assert np.abs(got['areas'] - want[3]).max() <= near


def test_quantized_decoder_agrees_with_fp32(predictors, onnx_files, image):
    fp32 = predictors[0]
    quant = ONNXPredictor(onnx_files['quantized'])
    quant.set_image_embedding(fp32.get_image_embedding(), image.shape[:2])
    rng = np.random.default_rng(0)
    ious = []
    for _ in range(12):
        points = rng.uniform([0, 0], [220, 150], size=(int(rng.integers(1, 4)), 2))
        labels = rng.integers(0, 2, len(points))
        a = fp32.predict(points, labels)[0]
        b = quant.predict(points, labels)[0]
        union = (a | b).sum((1, 2))
        ious += list(np.where(union > 0, (a & b).sum((1, 2)) / np.maximum(union, 1), 1.0))
    mean_iou = float(np.mean(ious))
    print(f'quantized vs fp32 decoder: mean mask IoU {mean_iou:.4f} over {len(ious)} masks')
    assert mean_iou >= 0.9


@pytest.mark.parametrize('orig_hw', [(150, 220), (256, 256), (301, 97), (40, 700)])
def test_graph_upscale_equals_the_model_upscale(sam_pair, orig_hw):
    # one upscale rule: the graph computes the input size from orig_im_size in the graph,
    # the model (SAM.postprocess_masks, the predictor) through upscale_mask_logits
    model = sam_pair[1]
    graph = SAMOnnxDecoder(model)
    size = model.image_size
    gen = torch.Generator().manual_seed(0)
    low_res = torch.randn(3, 4, size // 4, size // 4, generator=gen) * 5
    input_size = get_preprocess_shape(*orig_hw, size)
    expected = upscale_mask_logits(low_res, size, input_size, orig_hw)
    got = graph.upscale_masks(low_res, torch.tensor(orig_hw, dtype=torch.float32))
    assert got.shape == expected.shape == (3, 4, *orig_hw)
    assert (got - expected).abs().max().item() <= 1e-4
