"""The ``mmsam`` command: ``segment``, ``amg``, ``annotate`` and ``convert``.

Exit codes:

* 0: success;
* 1: an error, reported in one line (a missing or unreadable file, weights that cannot
  be loaded, a GPU that is not there, an output folder that cannot be written, an
  input folder without images) or, for folders, at least one image failed (listed at
  the end);
* 2: a bad command line (an unknown option, a bad point, box, device name or
  automatic-mask-generator option value);
* 130: interrupted (Ctrl-C); a folder job keeps its finished images and a rerun of the
  same command resumes after them.

Help, argument errors and ``mmsam.list_models()`` do not import torch, mmdet or
mmpretrain (they answer in a fraction of a second); the heavy stack is imported when
a command runs.

``demo/image_demo.py`` and ``demo/amg_demo.py`` are ``mmsam segment`` and ``mmsam amg``.
"""

import argparse
import math
import re
import sys
from typing import Callable, List, Optional

DEFAULT_MODEL = 'sam_vit-base-p16_3rdparty_sa1b-1024px'


def _number(kind: type, low: float = -math.inf, high: float = math.inf, high_open=False):
    """An argparse ``type``: a finite ``kind`` in ``[low, high]`` (``[low, high)``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {kind.__name__}, got {text!r}') from None
        if not math.isfinite(value) or value < low or value > high or (high_open and value == high):
            upper = ')' if high_open else ']'
            bounds = f'[{low:g}, {high:g}{upper}' if math.isfinite(high) else f'>= {low:g}'
            if not math.isfinite(low) and not math.isfinite(high):
                bounds = 'a finite number'
            raise argparse.ArgumentTypeError(f'expected {bounds}, got {text}')
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


#: ``mmsam amg`` options: ``AutomaticMaskGenerator`` arguments (``-`` for ``_``), with
#: their default and the values they accept (checked before anything is loaded).
AMG_OPTIONS = (
    ('points-per-side', 32, _number(int, 1)),
    ('points-per-batch', 64, _number(int, 1)),
    ('pred-iou-thresh', 0.88, _number(float)),
    ('stability-score-thresh', 0.95, _number(float)),
    ('stability-score-offset', 1.0, _number(float)),
    ('box-nms-thresh', 0.7, _number(float, 0, 1)),
    ('crop-n-layers', 0, _number(int, 0)),
    ('crop-nms-thresh', 0.7, _number(float, 0, 1)),
    ('crop-overlap-ratio', 512 / 1500, _number(float, 0, 1, high_open=True)),
    ('crop-n-points-downscale-factor', 1, _number(int, 1)),
    ('min-mask-region-area', 0, _number(int, 0)),
)


class _UsageError(ValueError):
    """A bad argument value (exit code 2)."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that takes ``-5,10`` (a point left of the image) for a value, not an option.

    Python before 3.13 only takes ``-5`` or ``-.5`` for negative numbers; this is
    3.13's rule (a ``-`` then a digit) for every Python.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r'^-\.?\d')


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
    parser = _ArgumentParser(
        prog=prog or 'mmsam',
        description='Segment Anything (SAM) on the OpenMMLab stack.',
        epilog='exit codes: 0 ok, 1 error or some images failed, 2 bad command line, '
        '130 interrupted (folder jobs resume on a rerun)',
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
    seg.add_argument(
        '--out-dir',
        default='outputs/segment',
        help='output folder; a rerun removes the mask files of an earlier run on the '
        'same image that this run does not write',
    )
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
    amg.add_argument(
        '--out-dir',
        default='outputs/amg',
        help='output folder: <image file name>.json and .overlay.png per image '
        '(its files are never read as input, even inside the input folder)',
    )
    amg.add_argument('--no-overlay', action='store_true', help='do not write overlay PNGs')
    amg.add_argument(
        '--overwrite',
        action='store_true',
        help='redo every image (default: skip images an earlier run did with the same '
        'model and options)',
    )
    group = amg.add_argument_group('automatic mask generator options')
    for name, default, kind in AMG_OPTIONS:
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
        default=None,
        metavar='KEY=VALUE',
        help="detector config overrides, e.g. model.test_cfg.score_thr=0.1 (mmengine's "
        'DictAction syntax)',
    )
    ann.add_argument(
        '--out-dir', default=None, help='output folder (default: <data>_auto_annotate)'
    )
    ann.add_argument(
        '--conf', type=_number(float, 0, 1), default=0.25, help='detection score threshold'
    )
    ann.add_argument(
        '--max-det', type=_number(int, 1), default=300, help='detections per image at most'
    )
    ann.add_argument('--classes', type=int, nargs='+', default=None, help='class indices to keep')
    ann.add_argument('--mask-format', choices=('rle', 'polygon'), default='rle')
    # defaults left to auto_annotate's signature (None: not passed)
    ann.add_argument(
        '--polygon-min-iou',
        type=_number(float, 0, 1),
        default=None,
        help='with --mask-format polygon: a mask whose polygons decode to a lower IoU is '
        "written as RLE (logged); default: auto_annotate's (0.95)",
    )
    ann.add_argument(
        '--polygon-tolerance',
        type=_number(float, 0),
        default=None,
        help='with --mask-format polygon: simplify the outlines by this many pixels '
        '(Douglas-Peucker); default 0, exact polygons',
    )
    _add_model_args(ann)

    conv = sub.add_parser('convert', help='convert a SAM checkpoint to the mmsam layout')
    conv.add_argument('src', help='source checkpoint (.pth, .bin, .safetensors)')
    conv.add_argument('dst', help='the .pth file to write')
    conv.add_argument(
        '--layout', default='auto', choices=('auto', 'official', 'hf', 'mmpretrain', 'mmsam')
    )
    conv.add_argument('--backbone-only', action='store_true', help='write the image encoder only')
    return parser


class _DeviceError(RuntimeError):
    """A device that is named correctly but not available here (exit code 1)."""


def _device(text: str) -> str:
    """Check ``--device`` before anything is loaded; ``''`` picks CUDA when available."""
    import torch

    if not text:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise _UsageError(
            f'bad --device {text!r}: expected cpu, cuda or cuda:N (N = 0 for the first GPU)'
        ) from None
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise _DeviceError(
                f'--device {text}: no CUDA GPU is available here (torch {torch.__version__}, '
                f'built with CUDA {torch.version.cuda or "no"}); use --device cpu'
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise _DeviceError(
                f'--device {text}: there is no GPU {device.index}; this machine has {count} '
                f'(cuda:0 to cuda:{count - 1})'
            )
    return text


def _load_sam(args, device: str):
    """The SAM model named by ``--model`` / ``--weights`` on ``device``."""
    from .apis.model_zoo import get_model

    pretrained = args.weights if args.weights else True
    return get_model(args.model, pretrained=pretrained, device=device)


def _report(report) -> int:
    print(report.summary(), file=sys.stderr if report.failed else sys.stdout)
    return 0 if report.ok else 1


def _run_segment(args) -> int:
    from .apis.segment_image import parse_box, parse_point

    if not args.points and not args.boxes:
        raise _UsageError('give at least one --points X,Y[:LABEL] or --boxes X1,Y1,X2,Y2')
    try:
        for p in args.points:
            parse_point(p)
        for b in args.boxes:
            parse_box(b)
    except ValueError as err:
        raise _UsageError(str(err)) from err
    from .apis.image_io import load_image
    from .utils.atomic_file import prepare_output_dir

    load_image(args.image)  # an unreadable image is reported before the model loads
    prepare_output_dir(args.out_dir)
    device = _device(args.device)
    from .apis.predictor import SAMPredictor
    from .apis.segment_image import segment_image_file

    predictor = SAMPredictor(_load_sam(args, device))
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
    from .apis.batch_runner import list_job_images
    from .utils.atomic_file import prepare_output_dir

    # the input and the output folder are checked before the model loads
    list_job_images(args.input, args.out_dir)
    prepare_output_dir(args.out_dir)
    device = _device(args.device)
    from .apis.mask_generator import AutomaticMaskGenerator
    from .apis.segment_folder import amg_folder

    options = {
        name.replace('-', '_'): getattr(args, name.replace('-', '_')) for name, *_ in AMG_OPTIONS
    }
    sam = _load_sam(args, device)
    try:
        generator = AutomaticMaskGenerator(sam, output_mode='coco_rle', **options)
    except ValueError as err:
        raise _UsageError(str(err)) from err
    report = amg_folder(
        generator, args.input, args.out_dir, draw=not args.no_overlay, resume=not args.overwrite
    )
    print(f'outputs in {args.out_dir}')
    return _report(report)


def _dict_options(values: Optional[List[str]]) -> Optional[dict]:
    """``KEY=VALUE`` strings parsed as mmengine's ``DictAction`` does."""
    if not values:
        return None
    from mmengine.config import DictAction

    namespace = argparse.Namespace()
    try:
        DictAction(option_strings=[], dest='options')(None, namespace, values)
    except ValueError as err:
        raise _UsageError(f'bad --det-cfg-options {values}: {err}') from err
    return namespace.options


def _run_annotate(args) -> int:
    options = _dict_options(args.det_cfg_options)
    device = _device(args.device)
    from .apis.auto_annotate import auto_annotate

    result = auto_annotate(
        args.data,
        args.det_model,
        sam_model=args.model,
        device=device,
        output_dir=args.out_dir,
        conf=args.conf,
        max_det=args.max_det,
        classes=args.classes,
        det_weights=args.det_weights,
        sam_weights=args.weights if args.weights else True,
        det_cfg_options=options,
        mask_format=args.mask_format,
        **{
            key: value
            for key, value in (
                ('polygon_min_iou', args.polygon_min_iou),
                ('polygon_tolerance', args.polygon_tolerance),
            )
            if value is not None
        },
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


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return ' '.join(text.split())


def _reported_errors() -> tuple:
    """The errors reported in one line (exit code 1) rather than with a traceback."""
    errors = [OSError, ValueError, ImportError, _DeviceError]
    zoo = sys.modules.get('mmsam.apis.model_zoo')  # only raised once it is imported
    if zoo is not None:
        errors.append(zoo.CheckpointDownloadError)
    return tuple(errors)


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
    run: Callable = _COMMANDS[args.command]
    try:
        return run(args)
    except KeyboardInterrupt:
        resume = ' (finished images are kept: rerun the same command to resume)'
        folder_job = args.command in ('amg', 'annotate')
        print(f'\n{name}: interrupted{resume if folder_job else ""}', file=sys.stderr)
        return 130
    except _UsageError as err:
        parser.print_usage(sys.stderr)
        print(f'{name}: error: {_one_line(err)}', file=sys.stderr)
        return 2
    except _reported_errors() as err:
        # missing files, unreadable images or weights, weights that cannot be downloaded
        # or do not fit the model, a broken environment: one clear line, no traceback
        message = _one_line(err)
        if not isinstance(err, (OSError, ValueError, ImportError, _DeviceError)):
            message += ' (here: --weights /path/to/the/file.pth)'
        print(f'{name}: error: {message}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
