"""What the commands assume when not told: the rubric, and which checks run.

Its own module so that ``cli`` and ``batch`` share it without importing each other.
"""

from __future__ import annotations

from . import engine
from .data import PROJECT_ROOT

__all__ = ["DEFAULT_RUBRIC", "default_checks"]

DEFAULT_RUBRIC = PROJECT_ROOT / "rubric.yaml"


def default_checks() -> str:
    """``all`` (instructor grading) where the reference is present, else ``public``."""
    return "all" if engine.REFERENCE_PATH.is_file() else "public"
