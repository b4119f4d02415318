"""segment_by_text: a reduced-size Grounding DINO and a tiny BERT built here, tiny SAMs.

The references are independent of the code under test: mmdet's own
``GroundingDINO.predict`` (through ``inference_detector``) for the detections, and the
official ``segment_anything.SamPredictor`` on the same weights for the masks.
"""

import numpy as np
import pytest
import torch

from mmsam.apis.predictor import SAMPredictor
from mmsam.apis.text_prompts import (
    build_grounding_detector,
    detect_by_text,
    parse_text_prompt,
    segment_by_text,
)
from mmsam.testing import build_sam_pair, smooth_image
from mmsam.testing.grounding_dino import write_tiny_grounding_dino

segment_anything = pytest.importorskip('segment_anything')
pytest.importorskip('transformers')
from segment_anything import SamPredictor  # noqa: E402

PHRASES = ['car', 'person', 'dog']


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('text')
    config, checkpoint, bert = write_tiny_grounding_dino(str(tmp), seed=0)
    detector = build_grounding_detector(config, checkpoint, device='cpu')
    official, ours = build_sam_pair('tiny', img_size=256, window_size=4, seed=1)
    return dict(
        config=config,
        checkpoint=checkpoint,
        bert=bert,
        detector=detector,
        official=official,
        sam=ours,
        image=smooth_image(60, 80, seed=3),
        tmp=tmp,
    )


@pytest.fixture(scope='module')
def all_detections(setup):
    """Every query's best phrase: no threshold, no cap."""
    return detect_by_text(setup['detector'], setup['image'], PHRASES, 0.0, 0.0, max_det=10**6)


def test_parse_text_prompt_normalises_like_mmdet():
    assert parse_text_prompt('car . person . dog') == PHRASES
    assert parse_text_prompt('Traffic_light .. person(s) . car . traffic light .') == [
        'Traffic light',
        'person',
        'car',
        'traffic light',
    ]
    assert parse_text_prompt(['car . bus', 'car', '  zebra  ']) == ['car', 'bus', 'zebra']
    for empty in ('', ' . . ', []):
        with pytest.raises(ValueError, match='no phrase'):
            parse_text_prompt(empty)


def test_detections_are_mmdet_grounding_dino_results(setup, all_detections):
    """Each query's best (box, phrase, score) equals mmdet's own result for that box."""
    from mmdet.apis import inference_detector

    from mmsam.apis.auto_annotate import detector_scope

    boxes, scores, labels = all_detections
    detector = setup['detector']
    num_queries = detector.num_queries
    assert boxes.shape == (num_queries, 4) and scores.shape == labels.shape == (num_queries,)
    assert set(labels.tolist()) <= {0, 1, 2} and len(set(labels.tolist())) > 1
    assert (np.diff(scores) <= 0).all()  # best first
    head_cfg = detector.bbox_head.test_cfg
    old = head_cfg['max_per_img']
    head_cfg['max_per_img'] = num_queries * len(PHRASES)  # every (query, phrase) pair
    try:
        with torch.no_grad(), detector_scope():
            bgr = np.ascontiguousarray(setup['image'][..., ::-1])
            result = inference_detector(
                detector, bgr, text_prompt=PHRASES, custom_entities=True
            ).pred_instances
    finally:
        head_cfg['max_per_img'] = old
    ref_boxes = result.bboxes.numpy().astype(np.float64)
    ref_scores = result.scores.numpy().astype(np.float64)
    ref_labels = result.labels.numpy()
    assert [result.label_names[i] for i in range(3)] == [PHRASES[j] for j in ref_labels[:3]]
    for box, score, label in zip(boxes, scores, labels):
        same_box = np.abs(ref_boxes - box).max(1) < 1e-3
        assert same_box.sum() == len(PHRASES)  # this query, once per phrase
        best = np.flatnonzero(same_box)[np.argmax(ref_scores[same_box])]
        assert ref_labels[best] == label
        np.testing.assert_allclose(score, ref_scores[best], rtol=0, atol=1e-5)


def _cut_between(values, index):
    """A threshold halfway between sorted values ``index`` and ``index + 1`` (a wide gap)."""
    values = np.sort(values)[::-1]
    gaps = values[:-1] - values[1:]
    assert gaps[index] > 1e-3, 'pick another index: the values there are too close'
    return float(values[index] + values[index + 1]) / 2


def test_text_threshold_keeps_the_best_phrase_scores_above_it(setup, all_detections):
    boxes, scores, labels = all_detections
    gaps = np.abs(np.diff(scores))
    index = int(np.argmax(gaps[: len(scores) // 2]))  # a clear gap in the upper half
    cut = _cut_between(scores, index)
    b, s, lab = detect_by_text(setup['detector'], setup['image'], PHRASES, 0.0, cut, 10**6)
    keep = scores >= cut
    assert len(s) == keep.sum() == index + 1
    np.testing.assert_array_equal(lab, labels[keep])
    np.testing.assert_allclose(b, boxes[keep], atol=1e-6)
    # at most max_det, best first
    b2, s2, _ = detect_by_text(setup['detector'], setup['image'], PHRASES, 0.0, 0.0, max_det=3)
    np.testing.assert_allclose(s2, scores[:3], atol=1e-7)


def test_box_threshold_on_the_highest_token_probability(setup, all_detections):
    _, scores, _ = all_detections
    detector, image = setup['detector'], setup['image']
    # a query's highest phrase-token probability is at least its best phrase's mean, so
    # a box threshold between two scores keeps at least the detections above it
    index = int(np.argmax(np.abs(np.diff(scores))[: len(scores) // 2]))
    cut = _cut_between(scores, index)
    _, s, _ = detect_by_text(detector, image, PHRASES, cut, 0.0, 10**6)
    assert len(s) >= index + 1 and np.isin(scores[: index + 1], s).all()
    assert len(s) <= len(scores)
    # above every probability: nothing is detected
    b, s, lab = detect_by_text(detector, image, PHRASES, 1.0, 0.0)
    assert b.shape == (0, 4) and s.shape == lab.shape == (0,)


def test_masks_equal_the_official_predictor_on_the_boxes(setup):
    """SAM's masks: the official SamPredictor, box by box, multimask_output=False."""
    detector, image = setup['detector'], setup['image']
    result = segment_by_text(image, 'car . person . dog', setup['sam'], detector, None, 0.0, 0.75)
    assert 0 < len(result) < detector.num_queries
    assert result.phrases == PHRASES
    assert result.label_names == [PHRASES[i] for i in result.labels]
    assert result.masks.shape == (len(result), 60, 80) and result.masks.dtype == bool
    ref = SamPredictor(setup['official'])
    ref.set_image(image)
    for box, mask in zip(result.boxes, result.masks):
        logits = ref.predict(box=box, multimask_output=False, return_logits=True)[0][0]
        differ = (logits > 0) != mask
        assert not differ.any() or np.abs(logits[differ]).max() < 1e-4
        assert mask.any()


def test_a_text_with_no_match_gives_empty_results(setup):
    predictor = SAMPredictor(setup['sam'])  # a predictor is taken as is
    result = segment_by_text(
        setup['image'], 'zebra', predictor, setup['detector'], None, box_threshold=1.0
    )
    assert len(result) == 0 and result.phrases == ['zebra'] and result.label_names == []
    assert result.masks.shape == (0, 60, 80) and result.boxes.shape == (0, 4)


def test_text_encoder_override_and_errors(setup, tmp_path, monkeypatch):
    # the BERT named by --text-encoder replaces the config's (same weights here: same dets)
    detector = build_grounding_detector(
        setup['config'], setup['checkpoint'], 'cpu', text_encoder=setup['bert']
    )
    assert detector.language_model.tokenizer.name_or_path == setup['bert']
    # weights with pickled objects are refused (weights_only=True), naming the file
    import datetime

    pickled = str(tmp_path / 'pickled.pth')
    state = torch.load(setup['checkpoint'], weights_only=True)
    torch.save(dict(state, meta=dict(date=datetime.date(2024, 1, 1))), pickled)
    with pytest.raises(ValueError, match="detector weights '.*pickled.pth' do not load"):
        build_grounding_detector(setup['config'], pickled, 'cpu')
    missing = str(tmp_path / 'no_bert')
    with pytest.raises(OSError, match='text encoder .*no_bert is not a BERT folder.*--text-enc'):
        build_grounding_detector(setup['config'], setup['checkpoint'], 'cpu', missing)

    # a hub name that cannot be fetched offline: named, with the fix (the hub is not asked
    # here: mmdet's tokenizer loader fails as transformers does without internet)
    class Offline:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {name}")

    from mmdet.models.language_models import bert

    monkeypatch.setattr(bert, 'AutoTokenizer', Offline)
    with pytest.raises(OSError, match='text encoder bert-base-uncased .*--text-encoder'):
        build_grounding_detector(setup['config'], setup['checkpoint'], 'cpu', 'bert-base-uncased')
    long_text = ' . '.join(f'{a}{b}' for a in 'abcdefghijklmnop' for b in 'abcdefghijklmnop')
    with pytest.raises(ValueError, match='tokens long, the detector reads at most 256'):
        detect_by_text(setup['detector'], setup['image'], parse_text_prompt(long_text))
    with pytest.raises(ValueError, match='box_threshold must be in'):
        segment_by_text(setup['image'], 'car', setup['sam'], setup['detector'], None, 1.5)
    with pytest.raises(ValueError, match='not an mmdet model name'):
        build_grounding_detector('no_such_detector', device='cpu')


def test_activation_checkpointing_configs_build_without_fairscale(setup, all_detections):
    """MM-Grounding-DINO's configs set encoder.num_cp (fairscale, a training-memory option)."""
    config = setup['tmp'] / 'with_num_cp.py'
    config.write_text(f'_base_ = [{setup["config"]!r}]\nmodel = dict(encoder=dict(num_cp=1))\n')
    detector = build_grounding_detector(str(config), setup['checkpoint'], 'cpu')
    boxes, scores, labels = detect_by_text(detector, setup['image'], PHRASES, 0.0, 0.0, 10**6)
    np.testing.assert_allclose(scores, all_detections[1], atol=1e-6)
    np.testing.assert_array_equal(labels, all_detections[2])
