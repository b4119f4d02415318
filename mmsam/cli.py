"""The ``mmsam`` command: ``segment``, ``amg``, ``annotate`` and ``convert``.

Exit codes: 0 success; 1 an error (missing weights, unreadable input) or, for folders,
at least one image failed (listed at the end); 2 a bad command line.

``demo/image_demo.py`` and ``demo/amg_demo.py`` are ``mmsam segment`` and ``mmsam amg``.
"""

import argparse
import sys
from typing import List, Optional

from mmengine.config import DictAction

DEFAULT_MODEL = 'sam_vit-base-p16_3rdparty_sa1b-1024px'


#: ``mmsam amg`` options: ``AutomaticMaskGenerator`` arguments (``-`` for ``_``).
AMG_OPTIONS = (
    ('points-per-side', int, 32),
    ('points-per-batch', int, 64),
    ('pred-iou-thresh', float, 0.88),
    ('stability-score-thresh', float, 0.95),
    ('stability-score-offset', float, 1.0),
    ('box-nms-thresh', float, 0.7),
    ('crop-n-layers', int, 0),
    ('crop-nms-thresh', float, 0.7),
    ('crop-overlap-ratio', float, 512 / 1500),
    ('crop-n-points-downscale-factor', int, 1),
    ('min-mask-region-area', int, 0),
)


class _UsageError(ValueError):
    """A bad argument value (exit code 2)."""


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--model',
        default=DEFAULT_MODEL,
        help=f'SAM model name (mmsam.list_models()) or config file (default: {DEFAULT_MODEL})',
    )
    parser.add_argument(
        '--weights',
        default=None,
        help='checkpoint file or URL (any layout: official, HF, mmsam); default: the '
        "model's published weights, downloaded once into torch's hub cache",
    )
    parser.add_argument(
        '--device', default='', help='cpu, cuda, cuda:1, ... (default: cuda if available)'
    )


def _build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or 'mmsam',
        description='Segment Anything (SAM) on the OpenMMLab stack.',
        epilog='exit codes: 0 ok, 1 error or some images failed, 2 bad command line',
    )
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    seg = sub.add_parser('segment', help='segment an image from point/box prompts')
    seg.add_argument('image', help='image file')
    seg.add_argument(
        '--points',
        nargs='+',
        action='extend',
        default=[],
        metavar='X,Y[:LABEL]',
        help='prompt points in pixels; label 1 foreground (default), 0 background',
    )
    seg.add_argument(
        '--boxes',
        nargs='+',
        action='extend',
        default=[],
        metavar='X1,Y1,X2,Y2',
        help='prompt boxes in pixels; each box is one object',
    )
    seg.add_argument('--out-dir', default='outputs/segment', help='output folder')
    seg.add_argument('--multimask', action='store_true', help='keep 3 candidate masks per prompt')
    seg.add_argument(
        '--save-masks',
        choices=('png', 'npy', 'both', 'none'),
        default='both',
        help='mask files to write besides the overlay (default: both)',
    )
    _add_model_args(seg)

    amg = sub.add_parser('amg', help='segment everything in an image or a folder (SA-1B JSON)')
    amg.add_argument('input', help='image file or folder (searched recursively)')
    amg.add_argument('--out-dir', default='outputs/amg', help='output folder')
    amg.add_argument('--no-overlay', action='store_true', help='do not write overlay PNGs')
    amg.add_argument(
        '--overwrite', action='store_true', help='redo images whose JSON exists (no resume)'
    )
    group = amg.add_argument_group('automatic mask generator options')
    for name, kind, default in AMG_OPTIONS:
        group.add_argument(f'--{name}', type=kind, default=default, help=f'(default: {default:g})')
    _add_model_args(amg)

    ann = sub.add_parser(
        'annotate', help='detector boxes -> SAM masks -> a COCO instance-segmentation JSON'
    )
    ann.add_argument('data', help='image folder (searched recursively) or image file')
    ann.add_argument('--det-model', required=True, help='mmdet config file or mmdet model name')
    ann.add_argument('--det-weights', default=None, help='detector checkpoint (path or URL)')
    ann.add_argument(
        '--det-cfg-options',
        nargs='+',
        action=DictAction,
        default=None,
        metavar='KEY=VALUE',
        help='detector config overrides, e.g. model.test_cfg.score_thr=0.1',
    )
    ann.add_argument(
        '--out-dir', default=None, help='output folder (default: <data>_auto_annotate)'
    )
    ann.add_argument('--conf', type=float, default=0.25, help='detection score threshold')
    ann.add_argument('--max-det', type=int, default=300, help='detections per image at most')
    ann.add_argument('--classes', type=int, nargs='+', default=None, help='class indices to keep')
    ann.add_argument('--mask-format', choices=('rle', 'polygon'), default='rle')
    _add_model_args(ann)

    conv = sub.add_parser('convert', help='convert a SAM checkpoint to the mmsam layout')
    conv.add_argument('src', help='source checkpoint (.pth, .bin, .safetensors)')
    conv.add_argument('dst', help='the .pth file to write')
    conv.add_argument(
        '--layout', default='auto', choices=('auto', 'official', 'hf', 'mmpretrain', 'mmsam')
    )
    conv.add_argument('--backbone-only', action='store_true', help='write the image encoder only')
    return parser


def _load_sam(args):
    """The SAM model named by ``--model`` / ``--weights`` / ``--device``."""
    from .apis.auto_annotate import resolve_device
    from .apis.model_zoo import get_model

    pretrained = args.weights if args.weights else True
    return get_model(args.model, pretrained=pretrained, device=resolve_device(args.device))


def _report(report) -> int:
    print(report.summary(), file=sys.stderr if report.failed else sys.stdout)
    return 0 if report.ok else 1


def _run_segment(args) -> int:
    from .apis.predictor import SAMPredictor
    from .apis.segment_image import parse_box, parse_point, segment_image_file

    if not args.points and not args.boxes:
        raise _UsageError('give at least one --points X,Y[:LABEL] or --boxes X1,Y1,X2,Y2')
    try:
        for p in args.points:
            parse_point(p)
        for b in args.boxes:
            parse_box(b)
    except ValueError as err:
        raise _UsageError(str(err)) from err
    predictor = SAMPredictor(_load_sam(args))
    out = segment_image_file(
        predictor,
        args.image,
        args.out_dir,
        points=args.points,
        boxes=args.boxes,
        multimask=args.multimask,
        save_masks=args.save_masks,
    )
    scores = ', '.join(f'{s:.3f}' for s in out['scores'])
    print(f'{len(out["scores"])} mask(s), predicted IoU {scores}')
    print(f'overlay: {out["overlay"]}')
    for path in out['masks']:
        print(f'masks: {path}')
    return 0


def _run_amg(args) -> int:
    from .apis.mask_generator import AutomaticMaskGenerator
    from .apis.segment_folder import amg_folder

    keys = [name.replace('-', '_') for name, _, _ in AMG_OPTIONS]
    options = {key: getattr(args, key) for key in keys}
    generator = AutomaticMaskGenerator(_load_sam(args), output_mode='coco_rle', **options)
    report = amg_folder(
        generator, args.input, args.out_dir, draw=not args.no_overlay, resume=not args.overwrite
    )
    print(f'outputs in {args.out_dir}')
    return _report(report)


def _run_annotate(args) -> int:
    from .apis.auto_annotate import auto_annotate

    result = auto_annotate(
        args.data,
        args.det_model,
        sam_model=args.model,
        device=args.device,
        output_dir=args.out_dir,
        conf=args.conf,
        max_det=args.max_det,
        classes=args.classes,
        det_weights=args.det_weights,
        sam_weights=args.weights if args.weights else True,
        det_cfg_options=args.det_cfg_options,
        mask_format=args.mask_format,
    )
    print(f'{result.ann_file}: {result.num_images} images, {result.num_annotations} annotations')
    return _report(result)


def _run_convert(args) -> int:
    from .apis.convert import convert_checkpoint

    report = convert_checkpoint(
        args.src, args.dst, layout=args.layout, backbone_only=args.backbone_only
    )
    print(report.summary())
    return 0


_COMMANDS = {
    'segment': _run_segment,
    'amg': _run_amg,
    'annotate': _run_annotate,
    'convert': _run_convert,
}


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Run the ``mmsam`` command line.

    Args:
        argv (list[str], optional): Arguments (``sys.argv[1:]`` by default).
        prog (str, optional): Program name in help and error messages.

    Returns:
        int: The exit code (see the module docstring).
    """
    parser = _build_parser(prog)
    args = parser.parse_args(argv)
    name = f'{parser.prog} {args.command}'
    from .apis.model_zoo import CheckpointDownloadError

    try:
        return _COMMANDS[args.command](args)
    except _UsageError as err:
        parser.print_usage(sys.stderr)
        print(f'{name}: error: {err}', file=sys.stderr)
        return 2
    except CheckpointDownloadError as err:
        print(f'{name}: error: {err} (here: --weights /path/to/the/file.pth)', file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        # missing files, unreadable images, weights that cannot be downloaded or do
        # not fit the model: one clear line rather than a traceback
        print(f'{name}: error: {err}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
