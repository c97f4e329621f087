"""What a batch shows while it runs, and how Ctrl-C stops it."""

from __future__ import annotations

import signal
import sys
import threading
import time

from ..outcome import RowStatus
from ..report import clean_line

__all__ = ["Interrupt", "Progress", "print_list"]


class Progress:
    """A redrawn bar with counts and ETA on a terminal; one line per submission otherwise."""

    def __init__(self, total: int, jobs: int, stream=sys.stderr):
        self.total = total
        self.jobs = jobs
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.done = 0
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self._drawn = 0.0

    def _clock(self, seconds: float) -> str:
        seconds = int(round(seconds))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
            else f"{seconds // 60}:{seconds % 60:02d}"

    def _eta(self) -> str:
        if not self.done:
            return "--:--"
        elapsed = time.monotonic() - self.started
        return self._clock(elapsed / self.done * (self.total - self.done))

    def finished(self, student: str, entry: dict) -> None:
        self.done += 1
        status = RowStatus(entry["status"])
        self.counts[status] = self.counts.get(status, 0) + 1
        if self.tty:
            self.draw(force=True)
            return
        if not status.scored:
            score = clean_line(entry.get("reason", ""))[:120]
        elif entry.get("total") is None:   # an item graded by hand is pending
            score = (f"{entry.get('raw') or 0:.4g}/{entry['max_total']:g} so far, "
                     f"{' '.join(entry.get('pending') or [])} pending")
        else:
            score = f"{entry['total']:.4g}/{entry['max_total']:g}"
        if status is RowStatus.IMPORT_ERROR:
            score += f": {clean_line(entry.get('reason', ''))[:120]}"
        print(f"[{self.done}/{self.total}] {clean_line(student)}: {status}, {score} "
              f"({entry['seconds']:.1f} s, ETA {self._eta()})", file=self.stream, flush=True)

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.tty or (not force and now - self._drawn < 0.25):
            return
        self._drawn = now
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        counts = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        running = min(self.jobs, self.total - self.done)
        line = (f"grading [{'#' * filled}{'-' * (width - filled)}] {self.done}/{self.total}"
                f"  {counts}{'  ' if counts else ''}{running} running"
                f"  {self._clock(now - self.started)} elapsed  ETA {self._eta()}")
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.draw(force=True)
            self.stream.write("\n")
            self.stream.flush()


class Interrupt:
    """Ctrl-C: the first stops the batch after the grades running now; the second quits."""

    def __init__(self):
        self.event = threading.Event()
        self._previous = None

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()


def print_list(what: str, lines: list[str], limit: int = 20) -> None:
    for line in lines[:limit]:
        print(f"  {what} {clean_line(line)}", file=sys.stderr)
    if len(lines) > limit:
        print(f"  ... and {len(lines) - limit} more {what}: see summary.json", file=sys.stderr)
