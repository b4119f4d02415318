"""``mmsam serve``: the interactive segmentation page for a folder of images.

Loads the model, checks the folder and the work folder (``FOLDER/.mmsam`` by default:
annotations, embeddings, the exported decoder, exports), builds the application
(:func:`mmsam.serve.create_app`) and runs it with uvicorn until Ctrl-C.

Safety: it binds to 127.0.0.1 (only this machine) unless ``--host`` says otherwise,
and then prints a warning (the page has no log-in: anyone who reaches the port can read
the images and change the annotations); on a loopback address it also refuses requests
whose ``Host`` header is not a loopback name (a DNS-rebinding guard).
"""

import argparse
import ipaddress
import os.path as osp
import sys

from ..utils.atomic_file import prepare_output_dir
from .common import check_device, load_sam

LOOPBACK_NAMES = ('localhost', '127.0.0.1', '::1', '[::1]')


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def build_server(args: argparse.Namespace):
    """The ASGI app of ``args`` (model loaded, folders checked), and its image count."""
    from ..serve import AnnotationStore, ImageFolder, Limits, ServeModel, create_app, ort_missing

    if not osp.isdir(args.folder):
        raise NotADirectoryError(f'image folder not found (or not a folder): {args.folder}')
    work_dir = args.work_dir or osp.join(args.folder, '.mmsam')
    prepare_output_dir(work_dir, 'work folder')
    limits = Limits(
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
        max_image_pixels=args.max_image_pixels,
    )
    folder = ImageFolder(args.folder, work_dir, limits)
    device = check_device(args.device)
    model = load_sam(args, device)
    amg_options = dict(
        points_per_side=args.amg_points_per_side,
        pred_iou_thresh=args.amg_pred_iou_thresh,
        stability_score_thresh=args.amg_stability_score_thresh,
    )
    engine = ServeModel(
        model, args.model, work_dir, args.store, args.embedding_dtype, amg_options=amg_options
    )
    store = AnnotationStore(work_dir, limits.max_annotations)
    hosts = list(LOOPBACK_NAMES) + [args.host] if _is_loopback(args.host) else None
    problem = ort_missing()
    if problem:
        print(f'mmsam serve: warning: {problem}', file=sys.stderr)
    return create_app(folder, engine, store, allowed_hosts=hosts), len(folder.names())


def run(args: argparse.Namespace) -> int:
    """``mmsam serve``: serve the page until interrupted.

    Returns:
        int: The exit code.
    """
    import uvicorn

    if not _is_loopback(args.host):
        print(
            f'mmsam serve: WARNING: --host {args.host} makes the page reachable from other '
            'machines; it has no log-in: anyone who can reach this port can read the '
            'images and change the annotations',
            file=sys.stderr,
        )
    app, count = build_server(args)
    shown = f'[{args.host}]' if ':' in args.host else args.host
    print(
        f'mmsam serve: {count} images in {args.folder}, model {args.model}: '
        f'http://{shown}:{args.port}/',
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
