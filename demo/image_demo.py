"""Segment an image from point/box prompts: writes an overlay PNG and the masks.

Example::

    python demo/image_demo.py demo/demo.jpg --points 230,160 --out-dir outputs/demo

The same as ``mmsam segment ...``; see ``python demo/image_demo.py -h``.
"""

import sys

from mmsam.cli import main

if __name__ == '__main__':
    sys.exit(main(['segment', *sys.argv[1:]], prog='image_demo.py'))
