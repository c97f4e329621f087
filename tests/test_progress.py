"""grader/live.py and the progress interface: ``check`` shows each item as it is scored.

The view's own tests run on recorded events with a fake clock (milliseconds);
the end-to-end ones grade a file whose Q4 loops forever, on a terminal (a pty)
and through a pipe, and assert on the order of what was shown, never on time.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from grader import live
from grader.live import LiveView
from grader.progress import IMPORT, STARTUP
from grader.report import ERROR, PASSED, CheckResult, QuestionResult, Report, to_text

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"
ESCAPE = re.compile("\x1b")
ITEMS = [("Q2", "Placeholders"), ("Q3", "Parameters"), ("Q4", "Forward propagation")]
HEADER = ["Grading loops.py", "public checks: 25 of 30 points can be checked here; the rest "
          "are checked at grading."]


def question(qid: str, title: str, status: str = PASSED) -> QuestionResult:
    points = 5.0
    check = CheckResult("shape", "shape", status, points, points if status == PASSED else 0.0,
                        "public", "" if status == PASSED else "timed out after 5 s in forward")
    feedback = "all checks passed" if status == PASSED else "timed out after 5 s in forward"
    return QuestionResult(qid, title, check.score, points, status, feedback, (check,))


def as_report(*questions: QuestionResult) -> Report:
    return Report("loops.py", sum(q.score for q in questions), sum(q.max_score for q in questions),
                  questions, "full", "all", 100.0, "1", "digest")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(live.time, "monotonic", fake)
    monkeypatch.setattr(live, "_TICK_SECONDS", 3600.0)  # no redraw but those the test asks
    return fake


def screen(output: str) -> list[str]:
    """What a terminal shows after ``output``: enough of one for the view's sequences
    (carriage return, newline, cursor up, erase to the end of the screen)."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[\d*[AJ]|\r|\n|[^\x1b\r\n]+", output):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token.endswith("A"):
            row = max(0, row - int(token[2:-1] or 1))
        elif token.endswith("J"):
            lines = lines[:row] + [lines[row][:col]]
        else:
            line = lines[row]
            lines[row] = line[:col] + token + line[col + len(token):]
            col += len(token)
    return [line for line in lines if line] if any(lines) else []


def test_plain_lines_show_the_header_then_each_row_once_as_it_is_scored(clock):
    out = io.StringIO()
    view = LiveView(out, HEADER, ITEMS, redraw=False)
    assert out.getvalue() == ""  # nothing before the first child starts
    q2, q3 = question("Q2", "Placeholders"), question("Q3", "Parameters")
    for name in (STARTUP, IMPORT, "Q2"):
        view.started(name, 10)
    view.scored(q2, False)
    view.scored(q2, False)  # told twice, shown once
    view.started("Q3", 10)
    view.scored(q3, False)
    view.close()
    lines = out.getvalue().splitlines()
    assert lines[:3] == HEADER + [""]
    final = to_text(as_report(q2, q3, question("Q4", "Forward propagation"))).splitlines()
    assert lines[3:] == [line for line in final if line.startswith(("  Q2", "  Q3"))]
    assert not ESCAPE.search(out.getvalue())


def test_an_item_still_running_says_so_with_its_elapsed_time_and_budget(clock):
    out = io.StringIO()
    view = LiveView(out, HEADER, ITEMS, redraw=False)
    view.started("Q4", 5)

    def tick(seconds: float) -> list[str]:
        clock.now += seconds
        before = len(out.getvalue())
        with view._lock:
            view._refresh()
        return out.getvalue()[before:].splitlines()

    assert tick(1) == []
    assert tick(2.5) == ["  Q4    Forward propagation: still running, 4 s of 5 s"]
    assert tick(5) == []                      # said again only after a while
    assert tick(11) == ["  Q4    Forward propagation: still running, 20 s of 5 s"]
    view.scored(question("Q4", "Forward propagation", ERROR), False)
    assert tick(60) == []
    view.close()


def test_on_a_terminal_the_view_is_redrawn_in_place_and_erased_at_the_end(clock, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")   # the view fits the terminal: one wide enough here
    out = io.StringIO()
    view = LiveView(out, HEADER, ITEMS, redraw=True)
    assert screen(out.getvalue())[:2] == HEADER  # the header at once
    view.started(STARTUP, 60)
    view.started(IMPORT, 20)
    assert screen(out.getvalue())[-1].strip() == "importing your file"
    view.started("Q2", 10)
    view.scored(question("Q2", "Placeholders"), False)
    view.started("Q3", 10)
    clock.now += 4
    with view._lock:
        view._refresh()
    shown = screen(out.getvalue())
    assert shown[:2] == HEADER
    assert re.search(r"Q2 +Placeholders +5/5 +ok +all checks passed", shown[2])
    assert re.search(r"Q3 +Parameters +running 4 s of 10 s$", shown[3])
    assert shown[4].split() == ["Q4", "Forward", "propagation"]
    assert len(shown) == 6  # drawn over itself, never below
    view.close()
    assert screen(out.getvalue()) == []  # erased: the report takes its place


# ------------------------------------------------------------------ end to end

LOOPING = REFERENCE.read_text() + (
    "\n\ndef forward_propagation(X, parameters):\n"
    "    while True:\n"
    "        pass\n")


@pytest.fixture(scope="module")
def looping(tmp_path_factory) -> tuple[Path, Path]:
    """A submission whose Q4 loops forever, and a rubric that gives Q4 5 s (the rest
    generous budgets: no verdict depends on the machine's load)."""
    folder = tmp_path_factory.mktemp("looping")
    data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
    for item in data["questions"]:
        item["budget_seconds"] = 5 if item["id"] == "Q4" else 120
    rubric = folder / "rubric.yaml"
    rubric.write_text(yaml.safe_dump(data, sort_keys=False))
    path = folder / "loops.py"
    path.write_text(LOOPING)
    return path, rubric


def _on_a_pty(argv: list[str], timeout: float = 600) -> tuple[int, str]:
    """(exit status, everything shown) of ``argv`` with a terminal as stdout and stderr."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, TERM="xterm", COLUMNS="120", LINES="40")
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks, end = [], time.monotonic() + timeout   # bounds a hang only
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(30), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.tf
def test_on_a_terminal_rows_appear_before_the_looping_item_ends(looping):
    path, rubric = looping
    code, shown = _on_a_pty([sys.executable, "-m", "grader", "check", str(path), "--rubric",
                             str(rubric), "--only", "Q2,Q3,Q4,Q5"])
    assert code == 1, shown
    q2_scored = re.search(r"Q2 +Placeholders X and Y +5/5 +ok", shown)
    q4_running = re.search(r"Q4 +Forward propagation +running", shown)
    total = shown.find("Total: 25/35")
    assert q2_scored and q4_running and total > 0, shown
    # Q2's row was drawn while Q4 was still running, and both before the report
    assert q2_scored.start() < q4_running.start() < total
    assert "\x1b[J" in shown                               # redrawn in place
    report = shown[shown.rfind("Grading "):]
    assert "timed out after 5 s" in report and "running" not in report


@pytest.mark.tf
def test_through_a_pipe_progress_is_plain_lines_and_the_report_is_unchanged(looping):
    path, rubric = looping

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "grader", "check", str(path), "--rubric",
                               str(rubric), "--only", "Q2,Q3,Q4", *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)

    piped, quiet = run(), run("--progress", "off")
    assert piped.returncode == quiet.returncode == 1, piped.stderr
    assert piped.stdout == quiet.stdout                    # the report, byte for byte
    assert quiet.stderr == ""
    assert not ESCAPE.search(piped.stderr)
    lines = piped.stderr.splitlines()
    assert lines[0] == f"Grading {path}" and lines[1] == "graded: Q2, Q3, Q4 only"
    rows = [line for line in lines if re.match(r"  Q\d  +\S.* \d+/\d+ ", line)]
    assert [row.split()[0] for row in rows] == ["Q2", "Q3", "Q4"]
    # each row as the report shows it
    assert rows == [line for line in piped.stdout.splitlines() if line in rows]
