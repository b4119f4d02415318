"""``mmsam convert``: a SAM checkpoint of any layout to the mmsam layout."""

import argparse


def run(args: argparse.Namespace) -> int:
    """Convert ``args.src`` to ``args.dst`` and print what was done; the exit code."""
    from ..apis.convert import convert_checkpoint

    report = convert_checkpoint(
        args.src, args.dst, layout=args.layout, backbone_only=args.backbone_only
    )
    print(report.summary())
    return 0
