"""Convert a SAM checkpoint (official, Hugging Face, mmpretrain ViTSAM) to an mmsam checkpoint.

    python tools/model_converters/sam2mmsam.py sam_vit_b_01ec64.pth sam_vit-base.pth
    python tools/model_converters/sam2mmsam.py sam_vit_b_01ec64.pth vit-base.pth --backbone-only
    python tools/model_converters/sam2mmsam.py model.safetensors sam_vit-base.pth --layout hf

The layout and the model size are read from the keys and shapes. Every source key
must be used and every key of the model filled; the output is written whole or not
at all. Exit code 0 on success, 1 with one ``error:`` line otherwise.
"""

import argparse
import sys
from typing import List, Optional


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert a SAM checkpoint (official segment-anything, Hugging Face '
        'facebook/sam-vit-*, mmpretrain ViTSAM) to an mmsam checkpoint'
    )
    parser.add_argument('src', help='source checkpoint (.pth, .pt, .bin or .safetensors)')
    parser.add_argument('dst', help='mmsam checkpoint to write (.pth)')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help="write the image encoder alone in mmpretrain's ViTSAM layout (headless model)",
    )
    parser.add_argument(
        '--layout',
        default='auto',
        choices=['auto', 'official', 'hf', 'mmpretrain', 'mmsam'],
        help='layout of the source (default: read from its keys)',
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmsam.apis.convert import convert_checkpoint

    try:
        report = convert_checkpoint(
            args.src, args.dst, layout=args.layout, backbone_only=args.backbone_only
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == '__main__':
    sys.exit(main())
