"""quantlab's cache folder on this host: provisioned runners, a lab host's received models.

One place decides where it is: ``$QUANTLAB_CACHE``, else ``~/.cache/quantlab``. Each user
keeps its own subfolder (``android/<abi>/`` for runners, ``lab/`` for a lab host's models).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """quantlab's cache folder: ``$QUANTLAB_CACHE`` or ``~/.cache/quantlab``."""
    return Path(os.environ.get("QUANTLAB_CACHE") or Path.home() / ".cache" / "quantlab")
