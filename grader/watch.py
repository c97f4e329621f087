"""Re-grade a file each time it is saved, with TensorFlow kept warm in between.

``python -m grader watch FILE`` (``make watch``) grades FILE, then polls its
modification time, size and content hash; once a change has held still for
:data:`DEBOUNCE_SECONDS` it grades again. Every grade of this process forks
its sandboxed children from the same zygote (``grader/zygote.py``), so a
re-grade pays for its items, not for importing TensorFlow again.

The zygote ends with this process (``zygote.shutdown`` at exit; the zygote
itself exits when its socket closes, also when this process is killed), and
after :data:`IDLE_SECONDS` without a grade (the next save starts a new one).
When the rubric or the grader's own code changes on disk, the watcher starts
itself again (``exec``), so that no grade mixes an old grader with a new one.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from . import zygote

__all__ = ["DEBOUNCE_SECONDS", "IDLE_SECONDS", "POLL_SECONDS", "Watcher", "file_state",
           "grader_state"]

POLL_SECONDS = 0.5
DEBOUNCE_SECONDS = 0.3
IDLE_SECONDS = 600.0
PACKAGE_DIR = Path(__file__).resolve().parent


def file_state(path: Path) -> tuple | None:
    """(mtime, size, sha256) of ``path``, or None when it cannot be read now
    (an editor may replace a file by renaming another over it)."""
    try:
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, digest


def grader_state(rubric: Path) -> tuple:
    """What a running grader assumes has not changed: the rubric and every
    Python file of the grader (names, mtimes, sizes)."""
    files = sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    state = []
    for path in [rubric, *files]:
        try:
            stat = path.stat()
            state.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            state.append((str(path), None, None))
    return tuple(state)


@dataclass
class Watcher:
    """Grades ``file`` with ``grade_once`` (which returns the report's text and
    its exit code) each time it changes, writing each report to ``out``.

    ``max_grades`` (tests) stops after that many grades; ``on_stale`` is called
    when the rubric or the grader changes on disk (by default: start again).
    """

    file: Path
    rubric: Path
    grade_once: Callable[[Path], tuple[str, int]]
    out: TextIO = sys.stdout
    poll: float = POLL_SECONDS
    debounce: float = DEBOUNCE_SECONDS
    idle: float = IDLE_SECONDS
    max_grades: int | None = None
    on_stale: Callable[[], None] | None = None
    grades: int = 0

    def run(self) -> int:
        """Watch until interrupted (or ``max_grades``); the last grade's exit code."""
        code, last, graded_at = 0, None, time.monotonic()
        known = grader_state(self.rubric)
        self._say(f"watching {self.file} (Ctrl-C to stop)")
        while self.max_grades is None or self.grades < self.max_grades:
            state = self._settled()
            if state is None or state == last:
                if time.monotonic() - graded_at > self.idle:
                    zygote.shutdown()  # idle: give the memory back; the next save warms again
                    graded_at = float("inf")
                time.sleep(self.poll)
                continue
            if grader_state(self.rubric) != known:
                self._say("the rubric or the grader changed on disk: starting again")
                (self.on_stale or _restart)()
                known = grader_state(self.rubric)
            last = state
            started = time.monotonic()
            text, code = self.grade_once(self.file)
            self.grades += 1
            graded_at = time.monotonic()
            self.out.write(text)
            self._say(f"graded in {graded_at - started:.1f} s (grade {self.grades}); "
                      f"watching {self.file} (Ctrl-C to stop)")
        return code

    def _settled(self) -> tuple | None:
        """The file's state once it has not changed for ``debounce`` seconds."""
        state = file_state(self.file)
        while state is not None:
            time.sleep(self.debounce)
            again = file_state(self.file)
            if again == state:
                return state
            state = again
        return None

    def _say(self, line: str) -> None:
        self.out.write(f"-- {line}\n")
        self.out.flush()


def _restart() -> None:
    """Replace this process with a new watcher over the same arguments."""
    zygote.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "grader", *sys.argv[1:]])
