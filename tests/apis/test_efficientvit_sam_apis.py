"""Every API with EfficientViT-SAM, on a seeded EfficientViT-SAM-L0 built from its config,
at half size: a 512 px frame (32 x 32 embedding) and a 256 px encoder input, so that the
encoder's own input size (512 in a 1024 frame for the published L models) is exercised
everywhere. Each result is checked against another path: bf16 against fp32, ONNX against
PyTorch, AMG and auto-annotation against the predictor, the command line (the published
L0, 1024 px frame) and ``tools/test.py`` against the predictor and the metric's range.
Parity with the reference is in ``tests/models/test_efficientvit_sam_parity.py``.
"""

import os

import numpy as np
import pytest
import torch

import mmsam
from mmsam.apis import AutomaticMaskGenerator, SAMPredictor
from mmsam.apis.auto_annotate import annotate_detections
from mmsam.structures.rle import coco_rle_to_mask
from mmsam.testing import smooth_image
from mmsam.testing.efficientvit_sam_parity import efficientvit_sam_config_path
from mmsam.testing.eval_runs import (
    REPO,
    assert_box_prompt_eval_runs,
    assert_cli_segment_matches_predictor,
    input_size_overrides,
)
from mmsam.testing.mobile_sam_parity import randomize_mobile_sam
from mmsam.testing.parity import assert_masks_match_logits
from mmsam.utils.checkpoint_io import save_checkpoint

FRAME, INPUT = 512, 256
NAME = 'efficientvit-sam_l0_3rdparty_sa1b-512px'
SMALL = input_size_overrides(FRAME)
SMALL['backbone']['input_size'] = INPUT
SMALL['data_preprocessor']['encoder_image_size'] = INPUT
POINT = dict(point_coords=np.array([[100.0, 70.0]]), point_labels=np.array([1]))


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    model = mmsam.get_model(efficientvit_sam_config_path('l0'), **SMALL)
    randomize_mobile_sam(model, seed=0)
    return model.eval()


@pytest.fixture(scope='module')
def image():
    return smooth_image(150, 220, seed=4)


@pytest.fixture(scope='module')
def predictor(model, image):
    predictor = SAMPredictor(model)
    predictor.set_image(image)
    return predictor


def test_small_model_sizes(model, predictor, image):
    x, input_size = model.data_preprocessor.preprocess_image(
        torch.from_numpy(image).permute(2, 0, 1)
    )
    assert x.shape == (3, INPUT, INPUT) and input_size == (349, 512)
    assert predictor.get_image_embedding().shape == (1, 256, FRAME // 16, FRAME // 16)
    with pytest.raises(ValueError, match='input_size'):  # a mismatched config is refused
        mmsam.get_model(
            efficientvit_sam_config_path('l0'), data_preprocessor=dict(encoder_image_size=1024)
        )


#: An EfficientViT-L-shaped encoder with few channels: bf16 convolutions run one group at a
#: time on CPUs without bf16 kernels (L0's depthwise layers take minutes there).
NARROW = dict(
    widths=[8, 16, 32, 64, 64],
    depths=[1, 1, 1, 1, 1],
    blocks=['res', 'fmb', 'fmb', 'mb', 'att'],
    expands=[1, 1, 1, 1, 1],
    fewer_norm=[False, False, False, True, True],
    neck_stages=[4, 3, 2],
    neck_depth=1,
    neck_expand=1,
    input_size=INPUT,
)


def test_set_torch_image_names_set_image(predictor):
    """The encoder's own input size is not the frame's: a frame-resized tensor is refused
    with what to call instead."""
    with pytest.raises(ValueError, match=r'encodes 256 px inputs in a 512 px frame.*set_image'):
        predictor.set_torch_image(torch.zeros(1, 3, 512, 340), (150, 220))


def test_bf16_autocast():
    torch.manual_seed(1)
    narrow = dict(SMALL, backbone=dict(SMALL['backbone'], arch=dict(_delete_=True, **NARROW)))
    model = mmsam.get_model(efficientvit_sam_config_path('l0'), **narrow)
    randomize_mobile_sam(model, seed=1)
    model.eval()
    x = torch.randn(1, 3, INPUT, INPUT, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model.extract_feat(x)[0]
        model.set_speed_options(autocast_dtype='bfloat16')
        try:
            out = model.extract_feat(x)[0]
        finally:
            model.set_speed_options(autocast_dtype=None)
    assert out.dtype == torch.float32 and ref.std() > 0.1
    rel = ((out - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.05, rel


def test_predictor_and_amg(model, predictor, image):
    masks, scores, low = predictor.predict(**POINT)
    assert masks.shape == (3, 150, 220) and scores.shape == (3,) and low.shape == (3, 128, 128)
    records = AutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    ).generate(image)
    assert records and all(r['segmentation'].shape == (150, 220) for r in records)
    # each AMG mask is the predictor's mask for its point (the best of three by score)
    rec = records[0]
    _, s, _ = predictor.predict(point_coords=np.array(rec['point_coords']), point_labels=[1])
    assert abs(float(s.max()) - rec['predicted_iou']) < 1e-4


def test_auto_annotate_detections(predictor, image):
    boxes = np.array([[20.0, 15.0, 120.0, 100.0], [90.0, 40.0, 210.0, 140.0]])
    anns = annotate_detections(image, predictor, boxes, np.array([0.9, 0.8]), np.array([0, 1]))
    assert len(anns) == 2
    for ann, box in zip(anns, boxes):
        # both boxes were decoded in one batch, each reference box alone: other float
        # rounding, so a pixel at the threshold may flip
        logits = predictor.predict(box=box, multimask_output=False, return_logits=True)[0]
        assert_masks_match_logits(coco_rle_to_mask(ann['segmentation']), logits[0])


def test_onnx_encoder_and_decoder(model, predictor, image, tmp_path):
    pytest.importorskip('onnxruntime')
    from mmsam.deploy import ONNXPredictor, export_decoder, export_encoder

    encoder = export_encoder(model, tmp_path / 'encoder.onnx')
    decoder = export_decoder(model, tmp_path / 'decoder.onnx')
    onnx = ONNXPredictor(decoder, encoder=encoder)
    assert onnx.encoder_input_size == INPUT and onnx.image_size == FRAME
    onnx.set_image(image)
    assert onnx.input_size == predictor.input_size == (349, 512)
    emb = predictor.get_image_embedding().numpy()
    np.testing.assert_allclose(onnx.get_image_embedding(), emb, atol=1e-4, rtol=0)
    _, onnx_scores, onnx_low = onnx.predict(**POINT)
    _, scores, low = predictor.predict(**POINT)
    np.testing.assert_allclose(onnx_scores, scores, atol=1e-3, rtol=0)
    np.testing.assert_allclose(onnx_low, low, atol=1e-3, rtol=0)


def test_cli_segment_with_model_name(image, tmp_path):
    """``mmsam segment --model <EfficientViT-SAM-L0 name>`` equals the predictor's mask."""
    torch.manual_seed(3)
    full = mmsam.get_model(NAME)
    randomize_mobile_sam(full, seed=3)
    assert_cli_segment_matches_predictor(NAME, full, image, str(tmp_path))


def test_tools_test_box_prompt_config(model, tmp_path):
    """tools/test.py with EfficientViT-SAM-L0's box-prompt config on the COCO fixture."""
    checkpoint = str(tmp_path / 'efficientvit_sam_small.pth')
    save_checkpoint(model.state_dict(), checkpoint)
    config = os.path.join(
        REPO, 'configs/efficientvit_sam/efficientvit-sam_l0_coco-val2017_box-prompt.py'
    )
    encoder_input = [
        f'model.backbone.input_size={INPUT}',
        f'model.data_preprocessor.encoder_image_size={INPUT}',
    ]
    assert_box_prompt_eval_runs(config, checkpoint, str(tmp_path), FRAME, encoder_input)
