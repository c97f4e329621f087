"""What came back from one probe, after the parent validated it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ProbeOutput:
    """One task's result: ``ok`` with values, or why there are none.

    status: ``ok`` | ``error`` (the submission raised or returned garbage) |
    ``timeout`` | ``crashed`` (the process died) | ``not_run``.
    """

    status: str
    meta: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    message: str = ""
    traceback: str = ""
    during_import: bool = False  # the submission failed before any item ran: one cause for all

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def array(self, key: str) -> np.ndarray | None:
        return self.arrays.get(key)

    @classmethod
    def failure(cls, status: str, message: str, traceback: str = "") -> "ProbeOutput":
        return cls(status=status, message=message, traceback=traceback)
