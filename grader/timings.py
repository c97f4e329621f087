"""Where a grade's time goes, for the benchmark: off unless ``$GRADER_TIMINGS`` names a file.

With ``GRADER_TIMINGS=/path/t.jsonl``, every grade of this process appends one
JSON line to that file once its report is built::

    {"submission": "tensorflow_tutorial.py", "total": 4.1,
     "spans": {"plan": [0.0, 0.01], "expected": [...], "zygote wait": [...],
               "main/startup": [...], "main/import": [...], "main/Q2-public": [...],
               "model/model-public": [...], "scoring": [...]}}

Each span is [start, end] in seconds from the start of the grade: the parent's
preparation (``plan``, ``expected``: the reference's cached values, ``source``:
reading the submission), ``zygote wait`` (the parent waiting for TensorFlow to
be ready in the zygote), each child's phases as the parent saw them
(``GROUP/startup``, ``GROUP/import``, ``GROUP/TASK``: from the phase's start to
its result; ``main`` is the child that runs the items in order, ``model`` the
one beside it; ``expected:GROUP/...`` when the reference runs because its
values are not cached), and ``scoring``. Nothing here reaches a report or a student.
"""

from __future__ import annotations

import contextvars
import json
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from .progress import Watch

__all__ = ["ENV", "Timings", "current", "grade_timings", "watched"]

ENV = "GRADER_TIMINGS"


class Timings:
    """The spans of one grade, from any of its threads."""

    def __init__(self, submission: str) -> None:
        self.submission = submission
        self._origin = time.monotonic()
        self._spans: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self.prefix = ""   # of the children's spans: "expected:" while the reference runs

    def begin(self, name: str) -> None:
        with self._lock:
            self._spans.setdefault(name, [time.monotonic() - self._origin, -1.0])

    def end(self, name: str) -> None:
        """Ends ``name`` (the first end counts; a span never begun starts here)."""
        now = time.monotonic() - self._origin
        with self._lock:
            span = self._spans.setdefault(name, [now, -1.0])
            if span[1] < 0:
                span[1] = now

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        self.begin(name)
        try:
            yield
        finally:
            self.end(name)

    def as_dict(self) -> dict:
        total = time.monotonic() - self._origin
        with self._lock:
            spans = {k: [round(a, 4), round(b if b >= 0 else total, 4)]
                     for k, (a, b) in self._spans.items()}
        return {"submission": self.submission, "total": round(total, 4), "spans": spans}


_CURRENT: contextvars.ContextVar[Timings | None] = contextvars.ContextVar("grader_timings",
                                                                         default=None)
_write_lock = threading.Lock()


def current() -> Timings | None:
    """The timings of the grade running in this thread, or None (the default: not measured)."""
    return _CURRENT.get()


@contextmanager
def grade_timings(submission: str) -> Iterator[Timings | None]:
    """Measures the grade run inside, when ``$GRADER_TIMINGS`` is set; writes its line after."""
    path = os.environ.get(ENV)
    if not path:
        yield None
        return
    timings = Timings(submission)
    token = _CURRENT.set(timings)
    try:
        yield timings
    finally:
        _CURRENT.reset(token)
        line = json.dumps(timings.as_dict()) + "\n"
        with _write_lock, open(path, "a", encoding="utf-8") as out:
            out.write(line)


@contextmanager
def measured(name: str, children: bool = False) -> Iterator[None]:
    """A span of the current grade's timings, if it is measured. ``children``: the
    children's spans inside it are named ``NAME:GROUP/PHASE`` (the reference's run)."""
    timings = current()
    if timings is None:
        yield
        return
    before = timings.prefix
    if children:
        timings.prefix = f"{name}:"
    try:
        with timings.span(name):
            yield
    finally:
        timings.prefix = before


class _Timed(Watch):
    """Forwards to ``inner``; records each phase's start and each result's arrival."""

    def __init__(self, inner: Watch, timings: Timings, group: str) -> None:
        self._inner, self._timings, self._group = inner, timings, group
        self._open: str | None = None
        self._lock = threading.Lock()

    def phase(self, name: str, budget: float) -> None:
        with self._lock:
            if self._open is not None:  # startup and import end when the next phase starts
                self._timings.end(self._open)
            self._open = f"{self._group}/{name}"
            self._timings.begin(self._open)
        self._inner.phase(name, budget)

    def result(self, task_id: str, output) -> None:
        self._timings.end(f"{self._group}/{task_id}")
        self._inner.result(task_id, output)


def watched(watch: Watch, group: str) -> Watch:
    """``watch``, recording the phases of the children it hears of when the grade is measured."""
    timings = current()
    return watch if timings is None else _Timed(watch, timings, timings.prefix + group)
