"""The process environment and the XDG base directories: a leaf module that any layer may read."""

from __future__ import annotations

import os
from pathlib import Path


def env(name: str) -> str | None:
    """An environment variable, where an empty value counts as unset."""
    return os.environ.get(name) or None


def xdg_dir(variable: str, fallback: str) -> Path:
    """An XDG base directory: ``$variable``, else ``~/fallback``; a relative value is ignored, as the spec says."""
    base = env(variable)
    return Path(base) if base and os.path.isabs(base) else Path.home() / fallback
