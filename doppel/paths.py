"""Where doppel keeps its state: one data directory, overridable with ``DOPPEL_HOME``.

Everything doppel writes on its own account (caches, converted models, the bot's database, the demo)
lives under this directory, so a user can find, back up or delete it in one place, and tests point it
at a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "DOPPEL_HOME"


def data_dir() -> Path:
    """The data directory: ``$DOPPEL_HOME`` if set, else ``~/.local/share/doppel`` (XDG style)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "doppel"


def cache_dir() -> Path:
    """Re-creatable files (de-quantized checkpoints, converter sources, scratch space)."""
    return data_dir() / "cache"
