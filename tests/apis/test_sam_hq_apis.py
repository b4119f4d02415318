"""Every API with SAM-HQ, on a seeded 256-px Light HQ-SAM built from its config.

The parity with the official ``segment_anything_hq`` is in
``tests/models/test_sam_hq_parity.py``; here the APIs run on the same model classes with a
256-px input, and each result is checked against another path: bf16 against fp32, the
fused encoder against the plain one, ONNX against PyTorch, AMG, ``auto_annotate``, the
command line and ``tools/test.py`` against the predictor.
"""

import json
import os

import numpy as np
import pytest
import torch

import mmsam
from mmsam.apis import AutomaticMaskGenerator, SAMPredictor
from mmsam.testing import smooth_image
from mmsam.testing.eval_runs import (
    REPO,
    assert_box_prompt_eval_runs,
    assert_cli_segment_matches_predictor,
    input_size_overrides,
)
from mmsam.testing.mobile_sam_parity import randomize_mobile_sam
from mmsam.testing.sam_hq_parity import LIGHT_HQ_SAM_CONFIG, config_path
from mmsam.testing.tool_scripts import load_tool
from mmsam.utils.checkpoint_io import save_checkpoint

IMG = 256
NAME = 'light-hq-sam_tinyvit-5m_3rdparty_hqseg44k-1024px'
SMALL = input_size_overrides(IMG)
POINT = dict(point_coords=np.array([[100.0, 70.0]]), point_labels=np.array([1]))


def _small_light_hq_sam(seed=0):
    torch.manual_seed(seed)
    model = mmsam.get_model(config_path(LIGHT_HQ_SAM_CONFIG), **SMALL)
    randomize_mobile_sam(model, seed=seed)
    return model.eval()


@pytest.fixture(scope='module')
def model():
    return _small_light_hq_sam()


@pytest.fixture(scope='module')
def image():
    return smooth_image(150, 220, seed=4)


@pytest.fixture(scope='module')
def predictor(model, image):
    predictor = SAMPredictor(model)
    predictor.set_image(image)
    return predictor


def _inputs(seed=0):
    return torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def test_features_carry_the_early_feature_fused_and_plain(model):
    x = _inputs()
    with torch.no_grad():
        features = model.extract_feat(x)[0]
        out, interm = model.backbone.plain_features(x, interm_stage=1)
    assert model.backbone.out_interm and model.embedding_dims == 256 + 160
    assert features.shape == (1, 416, IMG // 16, IMG // 16)
    assert (features[:, :256] - out).abs().max() <= 1e-4
    assert (features[:, 256:] - interm).abs().max() <= 1e-4 and interm.std() > 0.1


def test_bf16_autocast(model, predictor):
    _, _, ref = predictor.predict(**POINT)
    model.set_speed_options(autocast_dtype='bfloat16')
    try:
        bf16 = SAMPredictor(model)
        bf16.set_image(smooth_image(150, 220, seed=4))
        _, scores, low = bf16.predict(**POINT)
    finally:
        model.set_speed_options(autocast_dtype=None)
    assert low.dtype == np.float32 and scores.shape == (1,)
    rel = np.linalg.norm(low - ref) / np.linalg.norm(ref)
    assert 0 < rel < 0.1, rel


def test_predictor_amg_and_embedding_round_trip(model, predictor, image):
    masks, scores, low = predictor.predict(**POINT)
    assert masks.shape == (1, 150, 220) and scores.shape == (1,) and low.shape == (1, 64, 64)
    # an embedding kept elsewhere (server, store) holds the early feature too
    other = SAMPredictor(model)
    other.set_image_embedding(predictor.get_image_embedding(), image.shape[:2])
    assert np.array_equal(other.predict(**POINT)[2], low)
    with pytest.raises(ValueError, match=r'\(1, 416, 16, 16\)'):
        other.set_image_embedding(predictor.get_image_embedding()[:, :256], image.shape[:2])
    records = AutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    ).generate(image)
    assert records and all(r['segmentation'].shape == (150, 220) for r in records)
    # each AMG mask is the predictor's one mask for its point
    for rec in records[:3]:
        _, s, _ = predictor.predict(point_coords=np.array(rec['point_coords']), point_labels=[1])
        assert abs(float(s[0]) - rec['predicted_iou']) < 1e-5


def test_hq_token_only_is_refused_by_sam():
    model = mmsam.get_model(
        'configs/mobile_sam/mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px.py', **SMALL
    )
    predictor = SAMPredictor(model)
    predictor.set_image_embedding(torch.zeros(1, 256, 16, 16), (100, 100))
    with pytest.raises(ValueError, match='hq_token_only is a SAM-HQ option'):
        predictor.predict(**POINT, hq_token_only=True)


def test_onnx_encoder_and_decoder(model, predictor, image, tmp_path):
    pytest.importorskip('onnxruntime')
    from mmsam.deploy import ONNXPredictor, export_decoder, export_encoder
    from mmsam.deploy.graph_spec import decode_metadata
    from mmsam.deploy.onnx_session import CheckedSession

    encoder = export_encoder(model, tmp_path / 'encoder.onnx')
    box = dict(box=np.array([30, 20, 180, 120]))
    for hq_token_only in (False, True):
        model.mask_decoder.hq_token_only = hq_token_only  # baked into the decoder graph
        try:
            decoder = export_decoder(model, tmp_path / f'decoder_{hq_token_only}.onnx')
        finally:
            model.mask_decoder.hq_token_only = False
        props = decode_metadata(CheckedSession(decoder).metadata)
        assert props['hq_token_only'] is hq_token_only and props['num_mask_tokens'] == 2
        onnx = ONNXPredictor(decoder, encoder=encoder)
        if not hq_token_only:
            onnx.set_image(image)
            emb = onnx.get_image_embedding()
            np.testing.assert_allclose(emb, predictor.get_image_embedding(), atol=1e-4, rtol=0)
        else:
            onnx.set_image_embedding(emb, image.shape[:2])
        for prompt, multimask in ((POINT, True), (POINT, False), (box, False)):
            _, onnx_scores, onnx_low = onnx.predict(**prompt, multimask_output=multimask)
            _, scores, low = predictor.predict(
                **prompt, multimask_output=multimask, hq_token_only=hq_token_only
            )
            assert onnx_low.shape == low.shape == (1, 64, 64)
            np.testing.assert_allclose(onnx_scores, scores, atol=1e-3, rtol=0)
            np.testing.assert_allclose(onnx_low, low, atol=1e-3, rtol=0)


@pytest.fixture(scope='module')
def checkpoint(model, tmp_path_factory):
    """The 256-px model's weights (mmsam layout)."""
    path = tmp_path_factory.mktemp('sam_hq') / 'light_hq_sam_small.pth'
    save_checkpoint(model.state_dict(), str(path))
    return str(path)


def test_cli_segment_with_model_name(image, tmp_path):
    """``mmsam segment --model <Light HQ-SAM name>`` (1024 px) equals the predictor's mask."""
    torch.manual_seed(3)
    full = mmsam.get_model(NAME)
    randomize_mobile_sam(full, seed=3)
    assert_cli_segment_matches_predictor(NAME, full, image, str(tmp_path))


def test_tools_test_box_prompt_config(checkpoint, tmp_path):
    """tools/test.py with Light HQ-SAM's box-prompt config on the COCO fixture."""
    config = os.path.join(REPO, 'configs/sam_hq/light-hq-sam_tinyvit-5m_coco-val2017_box-prompt.py')
    assert_box_prompt_eval_runs(config, checkpoint, str(tmp_path), IMG)


def test_auto_annotate_masks_are_the_predictors(model, image, tmp_path):
    """auto_annotate with a random RetinaNet (mmdet's config, COCO names) and SAM-HQ: the
    mask of an annotation is SAM-HQ's mask for the detector's box."""
    import os.path as osp

    import mmdet
    from PIL import Image

    from mmsam.cli.annotate import auto_annotate
    from mmsam.structures.rle import coco_rle_to_mask

    data = tmp_path / 'images'
    data.mkdir()
    Image.fromarray(image).save(data / 'blobs.png')
    det_config = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', 'retinanet', 'retinanet_r18_fpn_1x_coco.py'
    )
    torch.manual_seed(0)
    out = tmp_path / 'out'
    result = auto_annotate(
        str(data),
        det_config,
        SAMPredictor(model),
        device='cpu',
        output_dir=str(out),
        conf=0.0,
        progress=False,
        det_cfg_options={
            'model.backbone.init_cfg': None,
            'model.test_cfg.score_thr': 0.0,
            'model.test_cfg.max_per_img': 3,
            'test_dataloader.dataset.pipeline.1.scale': (128, 128),
        },
    )
    assert result.num_images == 1 and result.num_annotations > 0
    record = json.loads(next((out / '.cache').iterdir()).joinpath('blobs.png.json').read_text())
    predictor = SAMPredictor(model)
    predictor.set_image(image)
    for ann in record['anns']:
        logits = predictor.predict(
            box=np.array(ann['det_bbox']), multimask_output=False, return_logits=True
        )[0]
        assert logits.shape == (1, 150, 220)
        # decoded alone here, with the other boxes there: a logit at the threshold may flip
        near = np.abs(logits[0] - model.mask_threshold) <= 1e-4
        differ = coco_rle_to_mask(ann['segmentation']) != (logits[0] > model.mask_threshold)
        assert not (differ & ~near).any()


def test_export_tool_refuses_hq_token_only_for_sam(checkpoint, tmp_path, capsys):
    """``tools/deployment/export_onnx.py --hq-token-only`` on a SAM model: exit code 1."""
    pytest.importorskip('onnxruntime')
    tool = load_tool('tools/deployment/export_onnx.py')
    out = str(tmp_path / 'decoder.onnx')
    sam = str(tmp_path / 'mobile_sam_small.pth')
    hq_parts = {'hf_token', 'hf_mlp', 'compress_vit_feat', 'embedding_encoder'}
    hq_parts.add('embedding_maskfeature')
    state = torch.load(checkpoint)['state_dict']
    save_checkpoint({k: v for k, v in state.items() if k.split('.')[1] not in hq_parts}, sam)
    mobile = 'mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px'
    capsys.readouterr()
    assert tool.main([mobile, sam, '--output', out, '--hq-token-only']) == 1
    assert '--hq-token-only is a SAM-HQ option' in capsys.readouterr().err
