"""Short keys that say whether an output is still what its inputs would give.

A resumable job (the folder commands, the embedding store, the serve page's caches)
keeps, beside each output, a key of what made it: the settings (:func:`settings_key`)
and the input file (:func:`file_stamp`). A changed setting or an edited file changes
the key, so the output is made again. The weights' digest is
:func:`mmsam.models.utils.embedding_cache.weights_digest`.
"""

import hashlib
import json
import os
from typing import Any, List


def settings_key(**settings: Any) -> str:
    """A short hash of JSON-able settings (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]


def file_stamp(path: str) -> List[int]:
    """``[size, mtime_ns]`` of a file: changes when the file is replaced or edited."""
    st = os.stat(path)
    return [int(st.st_size), int(st.st_mtime_ns)]
