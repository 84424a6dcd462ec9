"""Errors every layer may raise: a leaf module, so that sinks and settings need not import each other."""

from __future__ import annotations


class ConfigError(ValueError):
    """A usage or configuration mistake: reported in one line, exit code 2."""
