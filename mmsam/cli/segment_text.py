"""``mmsam segment IMAGE --text "car . person"``: segment what a text names in one image.

Grounding DINO (mmdet) finds the phrases' boxes and SAM segments every box
(:mod:`mmsam.apis.text_prompts`). The files are those of ``mmsam segment``
(``<stem>_overlay.png`` with the boxes, ``<stem>_mask_<i>.png`` / ``<stem>_masks.npy``
by ``--save-masks``) and ``<stem>_masks.json`` with the phrases, and for each mask its
box, phrase (``label`` index and ``label_name``), detection score and area.
"""

import argparse
import os.path as osp
from typing import Dict

from ..apis.image_io import load_image
from ..apis.predictor import SAMPredictor
from ..utils.atomic_file import atomic_write_json, prepare_output_dir
from ..visualization import overlay, save_png
from .common import UsageError, check_device, load_sam
from .segment import remove_stale_masks, write_mask_files


def segment_text_file(
    predictor: SAMPredictor,
    detector,
    image_path: str,
    out_dir: str,
    text: str,
    box_threshold: float,
    text_threshold: float,
    save_masks: str = 'both',
) -> Dict[str, object]:
    """Segment what ``text`` names in one image file and write the results.

    Args:
        predictor (SAMPredictor): Around the SAM model.
        detector (nn.Module): From :func:`mmsam.apis.text_prompts.build_grounding_detector`.
        image_path (str): The image file.
        out_dir (str): Output folder (created).
        text (str): ``'car . person'``.
        box_threshold, text_threshold (float): See
            :func:`mmsam.apis.text_prompts.detect_by_text`.
        save_masks (str): ``'png'``, ``'npy'``, ``'both'`` or ``'none'``.

    Returns:
        dict: ``overlay`` (path), ``masks`` (paths), ``label_names`` and ``scores``.
    """
    from ..apis.text_prompts import segment_by_text

    if save_masks not in ('png', 'npy', 'both', 'none'):
        raise ValueError(f"save_masks must be 'png', 'npy', 'both' or 'none', got {save_masks!r}")
    image = load_image(image_path)
    result = segment_by_text(
        image,
        text,
        predictor,
        detector,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
    )
    stem = osp.join(out_dir, osp.splitext(osp.basename(image_path))[0])
    prepare_output_dir(out_dir)
    written = write_mask_files(stem, result.masks, save_masks)
    atomic_write_json(
        dict(
            image=image_path,
            text=text,
            phrases=result.phrases,
            box_threshold=float(box_threshold),
            text_threshold=float(text_threshold),
            boxes=result.boxes.tolist(),
            labels=result.labels.tolist(),
            label_names=result.label_names,
            scores=[float(s) for s in result.scores],
            areas=[int(m.sum()) for m in result.masks],
        ),
        f'{stem}_masks.json',
    )
    drawn = overlay(image, result.masks, boxes=result.boxes.reshape(-1, 4))
    overlay_path = save_png(f'{stem}_overlay.png', drawn)
    remove_stale_masks(stem, written)
    return dict(
        overlay=overlay_path,
        masks=written,
        label_names=result.label_names,
        scores=[float(s) for s in result.scores],
    )


def run_text(args: argparse.Namespace) -> int:
    """``mmsam segment --text``: check the text, image and output folder, then segment.

    Returns:
        int: The exit code (0 also when nothing matches the text: that is an answer).

    Raises:
        UsageError: Points or boxes with ``--text``, or a text without a phrase.
    """
    from ..apis.text_prompts import build_grounding_detector, parse_text_prompt

    if args.points or args.boxes or args.multimask:
        raise UsageError('--text cannot be combined with --points, --boxes or --multimask')
    try:
        phrases = parse_text_prompt(args.text)
    except ValueError as err:
        raise UsageError(f'bad --text: {err}') from err
    load_image(args.image)  # an unreadable image is reported before the models load
    prepare_output_dir(args.out_dir)
    device = check_device(args.device)
    detector = build_grounding_detector(
        args.det_model, args.det_weights, device, text_encoder=args.text_encoder
    )
    predictor = SAMPredictor(load_sam(args, device))
    out = segment_text_file(
        predictor,
        detector,
        args.image,
        args.out_dir,
        args.text,
        args.box_threshold,
        args.text_threshold,
        args.save_masks,
    )
    counts = {p: out['label_names'].count(p) for p in phrases}
    found = ', '.join(f'{p}: {n}' for p, n in counts.items())
    print(f'{len(out["scores"])} mask(s) for {len(phrases)} phrase(s) ({found})')
    print(f'overlay: {out["overlay"]}')
    for path in out['masks']:
        print(f'masks: {path}')
    return 0


__all__ = ['run_text', 'segment_text_file']
