"""What happened, as types: every status the grader produces, and what came
back from one probe after the parent validated it.

This module is the one place a status is spelled. Each is a ``StrEnum``, so a
value is its own JSON/CSV text (``ItemStatus.PASSED == "passed"``) and reports
written before the enums existed still compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

__all__ = ["ChildEnd", "Flag", "FlagKind", "ItemStatus", "ProbeOutput", "ProbeStatus", "RowStatus",
           "SKIPPED_PREFIX"]


class ProbeStatus(StrEnum):
    """How one probe (one task in a child) ended, as the parent saw it."""

    OK = "ok"            # values came back and passed the channel's checks
    ERROR = "error"      # the submission raised, or returned garbage
    TIMEOUT = "timeout"  # the parent's clock ran out (the item's or the total)
    CRASHED = "crashed"  # the process died or broke the protocol


class ChildEnd(StrEnum):
    """Why the parent stopped reading one child (``engine`` supervision)."""

    FINISHED = "finished"    # it answered every task it was given
    TIMEOUT = "timeout"      # a phase's own budget ran out
    DEADLINE = "deadline"    # the grade's hard total ran out
    DIED = "died"            # it exited, or closed the channel, early
    OUT_OF_MEMORY = "out-of-memory"  # it died early after its sandbox reached the memory limit
    VIOLATION = "violation"  # it sent something out of turn or malformed
    CANCELLED = "cancelled"  # the grade stopped it (the model's group, when the rest failed)


class ItemStatus(StrEnum):
    """One check's (and so one question's) result in a report."""

    PASSED = "passed"
    FAILED = "failed"    # values came back and were wrong
    ERROR = "error"      # no values: the submission raised, timed out or crashed
    PENDING = "pending"  # instructor-graded: no automatic verdict


class RowStatus(StrEnum):
    """One student's row in a batch gradebook (``skipped-*`` rows are
    :data:`SKIPPED_PREFIX` + a reason, listed in ``batch.discovery``)."""

    GRADED = "graded"
    IMPORT_ERROR = "import-error"  # the file did not import: every item lost
    TIMEOUT = "timeout"            # graded; some item ran out of time
    CRASHED = "crashed"            # graded; some item's process died
    UNGRADABLE = "ungradable"      # a grader fault: no score, rerun
    PENDING = "pending"            # interrupted before its turn
    SKIPPED_NOT_PYTHON = "skipped-not-python"
    SKIPPED_NO_SUBMISSION = "skipped-no-submission"
    SKIPPED_AMBIGUOUS = "skipped-ambiguous"
    SKIPPED_TOO_LARGE = "skipped-too-large"
    SKIPPED_NOT_A_FILE = "skipped-not-a-file"

    @property
    def scored(self) -> bool:
        """Whether a row with this status carries a score."""
        return self in (RowStatus.GRADED, RowStatus.IMPORT_ERROR, RowStatus.TIMEOUT,
                        RowStatus.CRASHED)

    @property
    def skipped(self) -> bool:
        return self.value.startswith(SKIPPED_PREFIX)


SKIPPED_PREFIX = "skipped-"


@dataclass(frozen=True)
class ProbeOutput:
    """One task's result: ``ok`` with values, or why there are none."""

    status: ProbeStatus
    meta: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    message: str = ""
    traceback: str = ""
    during_import: bool = False  # the submission failed before any item ran: one cause for all
    unanswered: bool = False     # the function is still the starter's (NotImplementedError)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ProbeStatus(self.status))

    @property
    def ok(self) -> bool:
        return self.status is ProbeStatus.OK

    def array(self, key: str) -> np.ndarray | None:
        return self.arrays.get(key)

    @classmethod
    def failure(cls, status: ProbeStatus | str, message: str, traceback: str = "",
                unanswered: bool = False) -> "ProbeOutput":
        return cls(status=ProbeStatus(status), message=message, traceback=traceback,
                   unanswered=unanswered)


class FlagKind(StrEnum):
    """What an integrity flag says a submission does: for a human to review, never a score
    (``integrity.py`` reads the source; the child reports grader objects it finds changed)."""

    GRADER = "grader"                # names the grader's modules, probes or harness
    INTROSPECTION = "introspection"  # sys.modules, frames, gc, inspect
    NATIVE = "native-code"           # ctypes and the like
    PROC = "proc"                    # reads /proc
    SIGNALS = "signals"              # the signal module, os.kill
    PROCESSES = "processes"          # fork, subprocess, multiprocessing, exec
    DYNAMIC = "dynamic-code"         # runs code built from text (exec, eval, compile)
    TAMPERING = "tampering"          # the child found the grader's probes replaced
    UNSCANNED = "unscanned"          # the source was too large or unreadable to scan


@dataclass(frozen=True)
class Flag:
    """One integrity flag: its kind, and what was seen where (``sys._getframe (line 12)``)."""

    kind: FlagKind
    detail: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FlagKind(self.kind))
