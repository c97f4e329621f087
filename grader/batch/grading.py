"""Grading one submission of a batch, wherever it runs (a local thread or a Ray task)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .. import engine
from ..errors import GraderError
from ..report import Report
from ..rubric import Rubric

__all__ = ["MEMORY_PER_WORKER", "Outcome", "grade_one"]

MEMORY_PER_WORKER = 2**30            # a grading child peaks near 700 MiB


@dataclass(frozen=True)
class Outcome:
    """A report, or why there is none (a grader fault: the row is ungradable)."""

    report: Report | None
    error: str
    seconds: float
    measured: dict | None = None   # {"got": {task id: output}, "facts": {...}}: what was scored


def grade_one(path: Path, rubric: Rubric, visibilities: tuple[str, ...], isolation: str,
              prepared=None) -> Outcome:
    """``engine.grade``, with any fault of the grader's on this one submission as an Outcome,
    and the measurements it scored (``measured``), for the ledger to keep.

    ``prepared`` may hold only some of the plan's tasks: then only those run."""
    started = time.monotonic()
    keep: dict = {}
    extra = {"keep": keep} if prepared is None else {"prepared": prepared, "keep": keep}
    try:
        report = engine.grade(path, rubric, visibilities, isolation=isolation, **extra)
    except GraderError as exc:
        return Outcome(None, str(exc), time.monotonic() - started)
    except Exception as exc:  # a bug of ours on this one submission: the batch goes on
        return Outcome(None, f"internal grader error: {type(exc).__name__}: {exc}",
                       time.monotonic() - started)
    measured = None
    if "got" in keep:
        measured = {"got": dict(keep["got"]),
                    "facts": {k: keep.get(k) for k in ("problem", "extracted", "isolation",
                                                       "confinement", "startup")}}
    return Outcome(report, "", time.monotonic() - started, measured)
