"""Where generated model artifacts live: derived from installed packages, rebuilt on demand, never committed.

The converted multilingual base (``e5-small-*``) and the int8 ONNX exports (``onnx/<weights hash>``) are both
too big for git and both reproducible from what is installed, so they share one cache: ``$FLAGSTREAM_CACHE_DIR``
(an air-gapped box points it at a prepared volume) or ``~/.cache/flagstream``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("FLAGSTREAM_CACHE_DIR") or Path.home() / ".cache" / "flagstream")
