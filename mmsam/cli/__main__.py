"""``python -m mmsam.cli``: the ``mmsam`` command."""

import sys

from . import main

sys.exit(main())
