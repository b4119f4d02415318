"""The ``mmsam`` command line: its commands, their options, defaults and value checks.

Light on purpose (argparse only): ``mmsam --help`` and argument errors answer without
importing torch; the options are checked here, before anything is loaded.
"""

import argparse
import ast
import math
import re
from pathlib import Path
from typing import Any, Dict, Optional

from ..apis.model_index import DEFAULT_MODEL
from ..apis.text_defaults import (
    DEFAULT_BOX_THRESHOLD,
    DEFAULT_DET_MODEL,
    DEFAULT_TEXT_THRESHOLD,
)
from .distributed import add_launcher_args


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


_SAFE_DEFAULT_NODES = (
    ast.Expression,
    ast.Constant,
    ast.BinOp,
    ast.UnaryOp,
    ast.operator,
    ast.unaryop,
)


def signature_defaults(module: str, function: str) -> Dict[str, Any]:
    """The default arguments of a function of mmsam, read from its source, not imported.

    ``mmsam --help`` must not import torch; reading the defaults this way keeps one
    place for them (the API's signature) without importing the API.

    Args:
        module (str): The module's name relative to ``mmsam`` (``'apis.mask_generator'``).
        function (str): ``'name'`` or ``'Class.method'``.

    Returns:
        dict: Argument name -> default, for the defaults that are literals or
        arithmetic on literals (``512 / 1500``).
    """
    path = Path(__file__).resolve().parents[1].joinpath(*module.split('.')).with_suffix('.py')
    body = ast.parse(path.read_text(encoding='utf-8')).body
    node = None
    for part in function.split('.'):
        node = next(n for n in body if getattr(n, 'name', None) == part)
        body = node.body
    args = node.args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    defaults = {}
    for arg, value in pairs:
        expression = ast.Expression(value)
        if all(isinstance(n, _SAFE_DEFAULT_NODES) for n in ast.walk(expression)):
            code = compile(expression, str(path), 'eval')
            defaults[arg.arg] = eval(code, {'__builtins__': {}})  # literals only
    return defaults


#: ``AutomaticMaskGenerator``'s defaults (its signature is the one place for them).
AMG_DEFAULTS = signature_defaults('apis.mask_generator', 'AutomaticMaskGenerator.__init__')

#: ``mmsam amg`` options: ``AutomaticMaskGenerator`` arguments (``-`` for ``_``), with
#: the values they accept (checked before anything is loaded); defaults: :data:`AMG_DEFAULTS`.
AMG_OPTIONS = (
    ('points-per-side', _number(int, 1)),
    ('points-per-batch', _number(int, 1)),
    ('pred-iou-thresh', _number(float)),
    ('stability-score-thresh', _number(float)),
    ('stability-score-offset', _number(float)),
    ('box-nms-thresh', _number(float, 0, 1)),
    ('crop-n-layers', _number(int, 0)),
    ('crop-nms-thresh', _number(float, 0, 1)),
    ('crop-overlap-ratio', _number(float, 0, 1, high_open=True)),
    ('crop-n-points-downscale-factor', _number(int, 1)),
    ('min-mask-region-area', _number(int, 0)),
)

#: Storage types of an embedding store (``mmsam embed --dtype``, ``mmsam serve
#: --embedding-dtype``); ``mmsam.apis.embedding_store.DTYPES``.
STORE_DTYPES = ('float16', 'float32')

#: ``mmsam serve``'s ``--amg-*`` options (the "automatic" button): these
#: :data:`AMG_OPTIONS`, with a help text where the default alone says too little.
SERVE_AMG_OPTIONS = {
    'points-per-side': 'the "automatic" button: grid points per side',
    'pred-iou-thresh': '',
    'stability-score-thresh': '',
}

#: ``auto_annotate``'s defaults (the folder job of ``mmsam annotate``).
ANNOTATE_DEFAULTS = signature_defaults('cli.annotate', 'auto_annotate')

#: ``TiledSegmenter``'s defaults (``--tile-*`` of ``mmsam segment`` and ``amg``).
TILE_DEFAULTS = signature_defaults('apis.tiled_segmentation', 'TiledSegmenter.__init__')

#: ``--tile-*`` options: ``TiledSegmenter`` arguments; ``--tile-size`` turns tiling on.
TILE_OPTIONS = (
    ('tile-overlap', 'tile_overlap', _number(int, 0)),
    ('tile-merge-iou', 'merge_iou', _number(float, 0, 1)),
    ('tile-nms-iou', 'nms_iou', _number(float, 0, 1)),
    ('tile-max-prompt-tiles', 'max_prompt_tiles', _number(int, 1)),
)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that takes ``-5,10`` (a point left of the image) for a value, not an option.

    Python before 3.13 only takes ``-5`` or ``-.5`` for negative numbers; this is
    3.13's rule (a ``-`` then a digit) for every Python.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r'^-\.?\d')


def _add_option(
    parser: argparse.ArgumentParser, flag: str, kind, default, help: str = '', **kwargs
) -> None:
    """``parser.add_argument(flag, type=kind, default=default)`` whose help ends with the
    default, ``(default: X)``: the value is written once."""
    shown = f'{default:g}' if isinstance(default, float) else default
    help = f'{help} (default: {shown})' if help else f'(default: {shown})'
    parser.add_argument(flag, type=kind, default=default, help=help, **kwargs)


def _add_store_dtype_arg(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """The storage type of an embedding store (``mmsam.apis.embedding_store.DTYPES``,
    not imported here: it loads torch)."""
    parser.add_argument(flag, choices=STORE_DTYPES, default='float16', help=help)


def _add_prompt_list(parser: argparse.ArgumentParser, flag: str, metavar: str, help: str) -> None:
    """A prompt option of ``mmsam segment``: one or more values, the option repeatable
    (each use extends the list); none by default."""
    parser.add_argument(flag, nargs='+', action='extend', default=[], metavar=metavar, help=help)


def _add_out_dir(parser: argparse.ArgumentParser, command: str, help: str) -> None:
    """``--out-dir``, by default ``outputs/<command>``."""
    parser.add_argument('--out-dir', default=f'outputs/{command}', help=help)


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


def _add_text_args(parser: argparse.ArgumentParser) -> None:
    """Segment by text: the phrases, Grounding DINO's thresholds and its BERT."""
    group = parser.add_argument_group('segment by text (Grounding DINO boxes, see the README)')
    group.add_argument(
        '--text',
        default=None,
        metavar='PHRASES',
        help='segment what these phrases name, separated by " . ", e.g. "car . person"',
    )
    _add_option(
        group,
        '--box-threshold',
        _number(float, 0, 1),
        DEFAULT_BOX_THRESHOLD,
        'keep a box whose best phrase-token probability reaches this',
    )
    _add_option(
        group,
        '--text-threshold',
        _number(float, 0, 1),
        DEFAULT_TEXT_THRESHOLD,
        "label a box with its best phrase when the phrase's mean token probability reaches this",
    )
    group.add_argument(
        '--text-encoder',
        default=None,
        metavar='PATH',
        help="local BERT folder replacing the detector config's lang_model_name "
        '(bert-base-uncased from the Hugging Face hub) on machines without internet',
    )


def tile_options(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """``TiledSegmenter`` arguments from ``--tile-*``, or ``None`` without ``--tile-size``."""
    if getattr(args, 'tile_size', None) is None:
        return None
    options = {key: getattr(args, name.replace('-', '_')) for name, key, _ in TILE_OPTIONS}
    return dict(tile_size=args.tile_size, **options)


def _add_tile_args(parser: argparse.ArgumentParser) -> None:
    """Huge images: overlapping tiles (mmsam.apis.tiled_segmentation)."""
    group = parser.add_argument_group(
        'huge images: segment tile by tile, masks merged across tiles (RLE JSON; see README)'
    )
    group.add_argument(
        '--tile-size',
        type=_number(int, 16),
        default=None,
        help='tile side in pixels, e.g. 1024; turns tiling on (default: off, the image whole)',
    )
    for name, key, kind in TILE_OPTIONS:
        _add_option(group, f'--{name}', kind, TILE_DEFAULTS[key])


def _add_amg_args(
    parser: argparse.ArgumentParser, prefix: str = '', helps: Optional[Dict[str, str]] = None
) -> None:
    """:data:`AMG_OPTIONS` as ``--<prefix><name>``: all of them, or those named in ``helps``
    (option name -> help text before the default)."""
    for name, kind in AMG_OPTIONS:
        if helps is None or name in helps:
            default = AMG_DEFAULTS[name.replace('-', '_')]
            _add_option(parser, f'--{prefix}{name}', kind, default, (helps or {}).get(name, ''))


def _add_embed_parser(sub) -> None:
    emb = sub.add_parser('embed', help='write the image embeddings of a folder to a store')
    emb.add_argument('input', help='image file or folder (searched recursively)')
    emb.add_argument(
        '--out',
        required=True,
        help='store folder: embeddings/<image file name>.safetensors per image and index.json',
    )
    _add_option(emb, '--batch-size', _number(int, 1), 1, 'images per encoder call')
    _add_store_dtype_arg(
        emb, '--dtype', 'storage type of the embeddings (default: float16, half the size)'
    )
    emb.add_argument('--overwrite', action='store_true', help='redo every image (default: resume)')
    _add_model_args(emb)
    add_launcher_args(emb)


def _add_serve_parser(sub) -> None:
    """``mmsam serve``: the interactive page (see mmsam/cli/serve.py)."""
    srv = sub.add_parser('serve', help='an interactive segmentation page for a folder of images')
    srv.add_argument('folder', nargs='?', default='.', help='image folder (default: .)')
    srv.add_argument(
        '--host',
        default='127.0.0.1',
        help='address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 opens the '
        'page to the network, with a warning)',
    )
    _add_option(srv, '--port', _number(int, 1, 65535), 8000)
    srv.add_argument(
        '--work-dir',
        default=None,
        help='annotations, embeddings, the exported decoder and the exports '
        '(default: FOLDER/.mmsam)',
    )
    srv.add_argument(
        '--store',
        default=None,
        help='embedding store to read and add to (e.g. written by mmsam embed; default: '
        'WORK_DIR/embeddings/<encoder digest>)',
    )
    _add_store_dtype_arg(
        srv,
        '--embedding-dtype',
        'storage type of a new store (an existing one keeps its own; default: float16)',
    )
    _add_option(
        srv,
        '--max-request-mb',
        _number(float, 0.001),
        64.0,
        'largest request body (uploads, saves) in MiB',
    )
    _add_option(
        srv,
        '--max-image-pixels',
        _number(int, 1),
        64_000_000,
        'largest image served or uploaded, H*W',
    )
    _add_amg_args(srv, 'amg-', SERVE_AMG_OPTIONS)
    srv.add_argument(
        '--log-level',
        choices=('critical', 'error', 'warning', 'info', 'debug'),
        default='warning',
        help="uvicorn's log level (default: warning)",
    )
    _add_model_args(srv)


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of ``mmsam`` and its sub-commands (``args.command`` names the one given)."""
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
    _add_prompt_list(
        seg,
        '--points',
        'X,Y[:LABEL]',
        'prompt points in pixels; label 1 foreground (default), 0 background',
    )
    _add_prompt_list(
        seg, '--boxes', 'X1,Y1,X2,Y2', 'prompt boxes in pixels; each box is one object'
    )
    _add_out_dir(
        seg,
        'segment',
        'output folder; a rerun removes the mask files of an earlier run on the same image '
        'that this run does not write',
    )
    seg.add_argument('--multimask', action='store_true', help='keep 3 candidate masks per prompt')
    seg.add_argument(
        '--save-masks',
        choices=('png', 'npy', 'both', 'none'),
        default='both',
        help='mask files to write besides the overlay (default: both)',
    )
    _add_model_args(seg)
    _add_tile_args(seg)
    _add_text_args(seg)
    seg.add_argument(
        '--det-model',
        default=DEFAULT_DET_MODEL,
        help=f'with --text: Grounding DINO config file or mmdet model name (default: '
        f'{DEFAULT_DET_MODEL})',
    )
    seg.add_argument(
        '--det-weights',
        default=None,
        help="with --text: detector checkpoint (path or URL; default: the mmdet model's)",
    )

    amg = sub.add_parser('amg', help='segment everything in an image or a folder (SA-1B JSON)')
    amg.add_argument('input', help='image file or folder (searched recursively)')
    _add_out_dir(
        amg,
        'amg',
        'output folder: <image file name>.json and .overlay.png per image (its files are '
        'never read as input, even inside the input folder)',
    )
    amg.add_argument('--no-overlay', action='store_true', help='do not write overlay PNGs')
    amg.add_argument(
        '--overwrite',
        action='store_true',
        help='redo every image (default: skip images an earlier run did with the same '
        'model and options)',
    )
    _add_amg_args(amg.add_argument_group('automatic mask generator options'))
    _add_model_args(amg)
    _add_tile_args(amg)
    add_launcher_args(amg)

    ann = sub.add_parser(
        'annotate', help='detector boxes -> SAM masks -> a COCO instance-segmentation JSON'
    )
    ann.add_argument('data', help='image folder (searched recursively) or image file')
    ann.add_argument(
        '--det-model',
        default=None,
        help='mmdet config file or mmdet model name (required without --text; with --text '
        f'a Grounding DINO, default {DEFAULT_DET_MODEL})',
    )
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
        '--conf',
        type=_number(float, 0, 1),
        default=ANNOTATE_DEFAULTS['conf'],
        help='detection score threshold (with --text: --box-threshold, --text-threshold)',
    )
    ann.add_argument(
        '--max-det',
        type=_number(int, 1),
        default=ANNOTATE_DEFAULTS['max_det'],
        help='detections per image at most',
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
    add_launcher_args(ann)
    _add_text_args(ann)
    _add_embed_parser(sub)
    _add_serve_parser(sub)

    conv = sub.add_parser('convert', help='convert a SAM checkpoint to the mmsam layout')
    conv.add_argument('src', help='source checkpoint (.pth, .bin, .safetensors)')
    conv.add_argument('dst', help='the .pth file to write')
    conv.add_argument(
        '--layout', default='auto', choices=('auto', 'official', 'hf', 'mmpretrain', 'mmsam')
    )
    conv.add_argument('--backbone-only', action='store_true', help='write the image encoder only')
    return parser
