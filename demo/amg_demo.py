"""Segment everything in an image or a folder: SA-1B JSONs and overlay PNGs.

Example::

    python demo/amg_demo.py demo/demo.jpg --out-dir outputs/amg

The same as ``mmsam amg ...``; see ``python demo/amg_demo.py -h``.
"""

import sys

from mmsam.cli import main

if __name__ == '__main__':
    sys.exit(main(['amg', *sys.argv[1:]], prog='amg_demo.py'))
