"""Segment by text: mmdet's Grounding DINO finds the phrases' boxes, SAM segments them.

The text is a list of phrases separated by ``.`` (``'car . traffic light'``), as
mmdet's Grounding DINO takes custom entities: every phrase is one category. Phrases
are normalised as mmdet does (``clean_label_name``: ``(...)`` removed, ``_`` to a
space) and stripped; repeated phrases count once, so category ids follow the order of
first mention and stay stable for a given text.

Detection follows the official Grounding DINO's two thresholds on the token
probabilities (sigmoid of the contrastive logits) of each of the detector's queries:

* ``box_threshold``: a query is kept when its highest probability over the phrases'
  tokens reaches it (the official code takes the maximum over all tokens; here the
  ``[CLS]``/``[SEP]`` tokens and the ``.`` separators, which name no object, are left
  out);
* ``text_threshold``: its label is the phrase with the highest mean token
  probability (mmdet's class score, ``convert_grounding_to_cls_scores``), kept when
  that mean reaches it. That mean is the detection's score, as in mmdet's results.

SAM then segments every kept box with the paper's protocol for boxes (a box is not
ambiguous: one mask, ``multimask_output=False``).
"""

import os
import os.path as osp
import pickle
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .auto_annotate import (
    annotate_detections,
    build_detector,
    detector_scope,
    resolve_device,
    resolve_mmdet_name,
    segment_boxes,
)
from .predictor import SAMPredictor
from .text_defaults import DEFAULT_BOX_THRESHOLD, DEFAULT_DET_MODEL, DEFAULT_TEXT_THRESHOLD


@dataclass
class TextSegmentation:
    """What :func:`segment_by_text` finds in one image, best score first.

    Attributes:
        masks (np.ndarray): ``(N, H, W)`` bool, SAM's mask of each box.
        boxes (np.ndarray): ``(N, 4)`` XYXY float64 pixels of the detector.
        scores (np.ndarray): ``(N,)`` the label phrase's mean token probability.
        labels (np.ndarray): ``(N,)`` int64 indices into ``phrases``.
        phrases (list[str]): The normalised phrases of the text (the categories).
    """

    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    phrases: List[str]

    @property
    def label_names(self) -> List[str]:
        """The phrase of each detection."""
        return [self.phrases[i] for i in self.labels]

    def __len__(self) -> int:
        return len(self.labels)


def parse_text_prompt(texts: Union[str, Sequence[str]]) -> List[str]:
    """The phrases of a text prompt, normalised as mmdet's Grounding DINO does.

    Args:
        texts (str | Sequence[str]): ``'car . person'`` or ``['car', 'person']`` (each
            string may hold several ``.``-separated phrases).

    Returns:
        list[str]: The phrases in order of first mention, each once.

    Raises:
        ValueError: No phrase in the text.
    """
    from mmdet.models.detectors.grounding_dino import clean_label_name

    if isinstance(texts, str):
        texts = [texts]
    phrases: List[str] = []
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f'text prompts must be strings, got {type(text).__name__}')
        for part in text.split('.'):
            phrase = re.sub(r'\s+', ' ', clean_label_name(part)).strip()
            if phrase and phrase not in phrases:
                phrases.append(phrase)
    if not phrases:
        raise ValueError(
            f'no phrase in the text prompt {list(texts)!r}: give words separated by " . ", '
            'e.g. "car . traffic light"'
        )
    return phrases


def check_thresholds(box_threshold: float, text_threshold: float) -> None:
    """Raise ``ValueError`` naming a threshold outside ``[0, 1]``."""
    for name, value in (('box_threshold', box_threshold), ('text_threshold', text_threshold)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f'{name} must be in [0, 1], got {value}')


def build_grounding_detector(
    det_model: Union[str, torch.nn.Module] = DEFAULT_DET_MODEL,
    det_weights: Optional[str] = None,
    device: Optional[str] = None,
    text_encoder: Optional[str] = None,
    cfg_options: Optional[dict] = None,
) -> torch.nn.Module:
    """mmdet's Grounding DINO from a config, an mmdet model name, or a built model.

    Args:
        det_model (str | nn.Module): A config ``.py`` path, an mmdet model name
            (e.g. :data:`DEFAULT_DET_MODEL`; without ``det_weights`` its weights are
            downloaded from the URL in mmdet's metafile) or a model built by
            ``mmdet.apis.init_detector``.
        det_weights (str, optional): Checkpoint path or URL.
        device (str, optional): ``None``/``''`` picks CUDA when available.
        text_encoder (str, optional): The BERT that the config names in
            ``lang_model_name`` (``bert-base-uncased``, fetched from the Hugging Face
            hub) replaced by this name or local folder (``config.json``, weights and
            ``vocab.txt``), for machines without internet.
        cfg_options (dict, optional): Config overrides (``merge_from_dict`` keys).

    Returns:
        nn.Module: The detector in eval mode.

    Raises:
        ValueError: Not a Grounding DINO, or an unknown name.
        OSError: The text encoder cannot be loaded (named, with the fix).
    """
    device = resolve_device(device)
    if isinstance(det_model, torch.nn.Module):
        model = build_detector(det_model)
    else:
        if not isinstance(det_model, (str, os.PathLike)):
            raise TypeError(
                f'det_model must be a config path, an mmdet model name or a detector, '
                f'got {type(det_model).__name__}'
            )
        config = os.fspath(det_model)
        if not config.endswith('.py'):
            config, url = resolve_mmdet_name(config)
            det_weights = det_weights or url
        options = dict(cfg_options or {})
        if _check_grounding_config(config).model.get('encoder', {}).get('num_cp', 0):
            # activation checkpointing (MM-Grounding-DINO's configs) saves training memory
            # only and needs fairscale; inference does without (same state dict keys)
            options.setdefault('model.encoder.num_cp', 0)
        if text_encoder is not None:
            _check_text_encoder_folder(os.fspath(text_encoder))
            options['model.language_model.name'] = os.fspath(text_encoder)
        options = options or None
        try:
            model = build_detector(config, det_weights, device=device, cfg_options=options)
        except pickle.UnpicklingError as err:  # torch.load(weights_only=True) refused it
            from ..utils.checkpoint_io import CheckpointLoadError, _reason

            raise CheckpointLoadError(
                f'the detector weights {det_weights!r} do not load ({_reason(err)})'
            ) from err
        except (OSError, ValueError) as err:  # ValueError: huggingface_hub's bad repo ids
            if not _raised_by_text_encoder(err):
                raise
            name = text_encoder or "the config's lang_model_name"
            first = str(err).strip().splitlines()[0] if str(err).strip() else ''
            raise OSError(
                f'the text encoder {name} of {osp.basename(config)} could not be loaded '
                f'({type(err).__name__}: {first}); point --text-encoder (text_encoder=) at a '
                'local copy of bert-base-uncased (a folder with config.json, the weights and '
                'vocab.txt)'
            ) from err
    from mmdet.models.detectors import GroundingDINO

    if not isinstance(model, GroundingDINO):
        raise ValueError(
            f'det_model must be a Grounding DINO (a text-prompted detector), got '
            f'{type(model).__name__}'
        )
    return model.to(device).eval()


def _check_grounding_config(config: str):
    """The config, refused unless its model is a Grounding DINO (before anything is built)."""
    from mmengine.config import Config

    if not osp.isfile(config):
        raise FileNotFoundError(f'detector config not found: {config}')
    cfg = Config.fromfile(config)
    model_type = str(cfg.get('model', {}).get('type', ''))
    if model_type.split('.')[-1] != 'GroundingDINO':
        raise ValueError(
            f'det_model must be a Grounding DINO (a text-prompted detector); the model of '
            f'{config} is {model_type or "not set"}'
        )
    return cfg


def _check_text_encoder_folder(path: str) -> None:
    """A ``text_encoder`` that is a path must be a BERT folder (a name is a hub id)."""
    if not (osp.sep in path or path.startswith('.') or osp.exists(path)):
        return
    missing = [f for f in ('config.json', 'vocab.txt') if not osp.isfile(osp.join(path, f))]
    if missing:
        raise FileNotFoundError(
            f'the text encoder {path} is not a BERT folder (no {" or ".join(missing)} there); '
            'point --text-encoder (text_encoder=) at a local copy of bert-base-uncased (a '
            'folder with config.json, the weights and vocab.txt)'
        )


def _raised_by_text_encoder(err: BaseException) -> bool:
    """Whether ``err`` came from loading the BERT (transformers or the hub client)."""
    tb = err.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if any(part in path for part in ('transformers', 'huggingface_hub')) or path.endswith(
            osp.join('language_models', 'bert.py')
        ):
            return True
        tb = tb.tb_next
    return False


def _test_pipeline(detector: torch.nn.Module):
    """mmdet's test pipeline of the detector's config, fed arrays instead of files."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg

    steps = [dict(step) for step in get_test_pipeline_cfg(detector.cfg.copy())]
    steps = [s for s in steps if s['type'].split('.')[-1] != 'LoadAnnotations']
    steps[0] = dict(steps[0], type='mmdet.LoadImageFromNDArray')
    return Compose(steps)


@torch.no_grad()
def detect_by_text(
    detector: torch.nn.Module,
    rgb: np.ndarray,
    phrases: Sequence[str],
    box_threshold: float = DEFAULT_BOX_THRESHOLD,
    text_threshold: float = DEFAULT_TEXT_THRESHOLD,
    max_det: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grounding DINO's boxes for the phrases, thresholded as the module docstring says.

    Args:
        detector (nn.Module): Built by :func:`build_grounding_detector`.
        rgb (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        phrases (Sequence[str]): From :func:`parse_text_prompt`.
        box_threshold (float): On a query's highest phrase-token probability.
        text_threshold (float): On its best phrase's mean token probability.
        max_det (int, optional): At most this many (best first); default the
            config's ``test_cfg.max_per_img``.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: boxes ``(N, 4)`` XYXY float64
        pixels of ``rgb``, scores ``(N,)`` and labels ``(N,)`` int64 (indices into
        ``phrases``), best score first.
    """
    from mmdet.models.dense_heads.atss_vlfusion_head import convert_grounding_to_cls_scores
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy

    check_thresholds(box_threshold, text_threshold)
    phrases = list(phrases)
    if max_det is None:
        max_det = int(detector.test_cfg.get('max_per_img', 300))
    tokenized, caption, tokens_positive, _ = detector.get_tokens_and_prompts(phrases, True)
    max_tokens = detector.bbox_head.max_text_len
    if tokenized['input_ids'].shape[-1] > max_tokens:
        raise ValueError(
            f'the text prompt is {tokenized["input_ids"].shape[-1]} tokens long, the detector '
            f'reads at most {max_tokens}: give fewer phrases per run'
        )
    with detector_scope():
        data = _test_pipeline(detector)(
            dict(img=np.ascontiguousarray(rgb[..., ::-1]), img_id=0)  # mmdet reads BGR
        )
        data = detector.data_preprocessor(
            dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False
        )
        inputs, samples = data['inputs'], data['data_samples']
        token_map, _ = detector.get_positive_map(tokenized, tokens_positive)
        text = detector.language_model([caption])
        if detector.text_feat_map is not None:
            text['embedded'] = detector.text_feat_map(text['embedded'])
        samples[0].token_positive_map = token_map
        head_inputs = detector.forward_transformer(detector.extract_feat(inputs), text, samples)
        keys = ('hidden_states', 'references', 'memory_text', 'text_token_mask')
        cls_scores, box_preds = detector.bbox_head(*(head_inputs[k] for k in keys))
    probs = cls_scores[-1][0].sigmoid()  # (Q, max_text_len): token probabilities
    phrase_scores = convert_grounding_to_cls_scores(probs[None], [token_map])[0]  # (Q, P)
    tokens = sorted({t for label_tokens in token_map.values() for t in label_tokens})
    box_scores = probs[:, tokens].max(-1).values
    scores, labels = phrase_scores.max(-1)
    keep = (box_scores >= box_threshold) & (scores >= text_threshold)
    order = torch.argsort(scores[keep], descending=True, stable=True)[:max_det]
    meta = samples[0].metainfo
    height, width = meta['img_shape']
    boxes = bbox_cxcywh_to_xyxy(box_preds[-1][0][keep][order].float())
    boxes = boxes * boxes.new_tensor([width, height, width, height])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    boxes = boxes / boxes.new_tensor(meta['scale_factor']).repeat(2)
    return (
        boxes.cpu().numpy().astype(np.float64).reshape(-1, 4),
        scores[keep][order].cpu().numpy().astype(np.float64),
        labels[keep][order].cpu().numpy().astype(np.int64),
    )


def segment_by_text(
    image: Union[str, np.ndarray],
    texts: Union[str, Sequence[str]],
    sam: Union[SAMPredictor, torch.nn.Module],
    det_model: Union[str, torch.nn.Module] = DEFAULT_DET_MODEL,
    det_weights: Optional[str] = None,
    box_threshold: float = DEFAULT_BOX_THRESHOLD,
    text_threshold: float = DEFAULT_TEXT_THRESHOLD,
    device: Optional[str] = None,
    text_encoder: Optional[str] = None,
    max_det: Optional[int] = None,
    sam_batch: int = 64,
) -> TextSegmentation:
    """Segment everything a text names in one image ("segment every car").

    Args:
        image (str | np.ndarray): A file (:func:`mmsam.apis.load_image`) or an
            ``(H, W, 3)`` uint8 RGB array.
        texts (str | Sequence[str]): Phrases, ``'car . person'`` (see
            :func:`parse_text_prompt`).
        sam (SAMPredictor | nn.Module): SAM, or a predictor around it.
        det_model, det_weights, device, text_encoder: See
            :func:`build_grounding_detector` (a built detector is used as is).
        box_threshold, text_threshold, max_det: See :func:`detect_by_text`.
        sam_batch (int): Boxes decoded together by SAM.

    Returns:
        TextSegmentation: masks, boxes, scores, labels and the phrases.
    """
    from .image_io import load_image

    phrases = parse_text_prompt(texts)
    check_thresholds(box_threshold, text_threshold)
    rgb = load_image(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'image must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}')
    predictor = sam if isinstance(sam, SAMPredictor) else SAMPredictor(sam)
    detector = build_grounding_detector(det_model, det_weights, device, text_encoder)
    boxes, scores, labels = detect_by_text(
        detector, rgb, phrases, box_threshold, text_threshold, max_det
    )
    masks = segment_boxes(predictor, rgb, boxes, sam_batch)
    return TextSegmentation(masks, boxes, scores, labels, phrases)


def annotate_image_by_text(
    rgb: np.ndarray,
    detector: torch.nn.Module,
    predictor: SAMPredictor,
    phrases: Sequence[str],
    box_threshold: float = DEFAULT_BOX_THRESHOLD,
    text_threshold: float = DEFAULT_TEXT_THRESHOLD,
    max_det: Optional[int] = None,
    **mask_options,
) -> List[dict]:
    """COCO annotations of everything the phrases name in one image.

    Args:
        rgb (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        detector (nn.Module): Built by :func:`build_grounding_detector`.
        predictor (SAMPredictor): Around the SAM model.
        phrases (Sequence[str]): From :func:`parse_text_prompt`; ``label`` indexes them.
        box_threshold, text_threshold, max_det: See :func:`detect_by_text`.
        **mask_options: ``mask_format``, ``polygon_min_iou``, ``polygon_tolerance``,
            ``sam_batch`` and ``name`` of :func:`mmsam.apis.annotate_image`.

    Returns:
        list[dict]: As :func:`mmsam.apis.annotate_image`.
    """
    detections = detect_by_text(detector, rgb, phrases, box_threshold, text_threshold, max_det)
    return annotate_detections(rgb, predictor, *detections, **mask_options)


__all__ = [
    'DEFAULT_BOX_THRESHOLD',
    'DEFAULT_DET_MODEL',
    'DEFAULT_TEXT_THRESHOLD',
    'TextSegmentation',
    'annotate_image_by_text',
    'build_grounding_detector',
    'check_thresholds',
    'detect_by_text',
    'parse_text_prompt',
    'segment_by_text',
]
