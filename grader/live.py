"""``check``'s live view of one grade, on stderr while the grade runs.

On a terminal the view is redrawn in place: the report's header, a row per
item (filled in as each is scored, "running" with its elapsed time and
budget while it runs), and what the grade is doing; it is erased when the
grade ends, and the report takes its place.  Anywhere else (a pipe, a
file) it prints plain lines, each once: the header (when the first child
starts: a grade that cannot start prints only its error), each row as its
item is scored, and a line for anything still running after a few seconds.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from typing import TextIO

from .progress import IMPORT, STARTUP, Progress
from .report import QuestionResult, text_row

__all__ = ["LiveView", "SLOW_SECONDS"]

SLOW_SECONDS = 3.0     # what runs longer than this says so, with its elapsed time and budget
_REPEAT_SECONDS = 15.0  # plain lines: how often to say it again
_TICK_SECONDS = 0.5
_STAGES = {STARTUP: "starting TensorFlow", IMPORT: "importing your file"}


class LiveView(Progress):
    """The view of one grade; ``close`` ends it (and erases it, on a terminal).

    ``items``: (id, title) of every item graded, in the report's order.
    ``redraw``: redraw in place (a terminal) rather than print plain lines.
    """

    def __init__(self, stream: TextIO, header: list[str], items: list[tuple[str, str]],
                 redraw: bool) -> None:
        self._stream, self._redraw = stream, redraw
        self._header = list(header)
        self._items = list(items)
        self._width = max((len(title) for _, title in items), default=10)
        self._rows: dict[str, str] = {}
        self._running: dict[str, tuple[float, float, float]] = {}  # name: start, budget, told
        self._drawn = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._headed = False
        if redraw:
            with self._lock:
                self._draw()
        self._ticker = threading.Thread(target=self._tick, name="grader-live", daemon=True)
        self._ticker.start()

    # -- Progress
    def started(self, name: str, budget: float) -> None:
        with self._lock:
            if name not in _STAGES:
                for stage in _STAGES:
                    self._running.pop(stage, None)
            elif name == IMPORT:
                self._running.pop(STARTUP, None)
            now = time.monotonic()
            self._running[name] = (now, budget, now)
            self._head()
            self._refresh()

    def scored(self, question: QuestionResult, import_failed: bool) -> None:
        row = text_row(question, self._width, import_failed)
        with self._lock:
            self._running.pop(question.id, None)
            for stage in _STAGES:
                self._running.pop(stage, None)
            if self._closed or question.id in self._rows:
                return
            self._rows[question.id] = row
            self._head()
            if self._redraw:
                self._draw()
            else:
                self._write(row + "\n")

    def close(self) -> None:
        """End the view: on a terminal, erase it (the report goes where it was)."""
        self._stop.set()
        if self._ticker is not threading.current_thread():
            self._ticker.join(5.0)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._redraw:
                self._write(self._up() + "\x1b[J")
                self._drawn = 0

    # -- drawing
    def _head(self) -> None:
        if not self._redraw and not self._headed:
            self._headed = True
            self._write("\n".join(self._header + [""]) + "\n")

    def _tick(self) -> None:
        while not self._stop.wait(_TICK_SECONDS):
            with self._lock:
                if not self._closed:
                    self._refresh()

    def _refresh(self) -> None:
        """Called with the lock held: redraw, or print what has become slow."""
        if self._redraw:
            self._draw()
            return
        now = time.monotonic()
        for name, (start, budget, told) in list(self._running.items()):
            elapsed = now - start
            due = SLOW_SECONDS if told == start else _REPEAT_SECONDS
            if elapsed >= SLOW_SECONDS and now - told >= due:
                self._running[name] = (start, budget, now)
                self._write(f"  {self._label(name)}: still running, {_elapsed(elapsed, budget)}\n")

    def _label(self, name: str) -> str:
        return _STAGES.get(name) or f"{name:<5} {self._title(name)}".rstrip()

    def _title(self, item_id: str) -> str:
        return next((title for i, title in self._items if i == item_id), "")

    def _lines(self) -> list[str]:
        now = time.monotonic()
        lines = self._header + [""]
        for item_id, title in self._items:
            if item_id in self._rows:
                lines.append(self._rows[item_id])
            elif item_id in self._running:
                start, budget, _ = self._running[item_id]
                lines.append(f"  {item_id:<5} {title:<{self._width}}  {'':>7}  running "
                             + (_elapsed(now - start, budget)
                                if now - start >= SLOW_SECONDS else ""))
            else:
                lines.append(f"  {item_id:<5} {title}")
        stages = [(name, self._running[name]) for name in _STAGES if name in self._running]
        doing = [f"{_STAGES[name]}" + (f" ({_elapsed(now - start, budget)})"
                                       if now - start >= SLOW_SECONDS else "")
                 for name, (start, budget, _) in stages]
        waiting = len(self._rows) < len(self._items)
        lines += ["", "  " + ("; ".join(doing) or ("grading..." if waiting else "done"))]
        return lines

    def _up(self) -> str:
        return f"\r\x1b[{self._drawn}A" if self._drawn else "\r"

    def _draw(self) -> None:
        try:
            columns = os.get_terminal_size(self._stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        columns = max(20, (columns or shutil.get_terminal_size((100, 24)).columns) - 1)
        lines = [line[:columns] for line in self._lines()]
        self._write(self._up() + "\x1b[J" + "\n".join(lines) + "\n")
        self._drawn = len(lines)

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed stream: the report still comes
            pass


def _elapsed(seconds: float, budget: float) -> str:
    return f"{seconds:.0f} s of {budget:g} s"
