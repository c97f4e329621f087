"""``python -m grader watch FILE``: a grade per save, one zygote across grades."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest

from grader import watch
from grader.watch import Watcher, file_state, grader_state

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"


class _Grades:
    """A stand-in grade: records the file's text each time, returns a report line."""

    def __init__(self):
        self.seen: list[str] = []
        self.done = threading.Semaphore(0)

    def __call__(self, path: Path) -> tuple[str, int]:
        self.seen.append(path.read_text())
        self.done.release()
        return f"Total: {len(self.seen)}\n", 0


def _start(watcher: Watcher) -> threading.Thread:
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    return thread


def _save(path: Path, text: str) -> None:
    path.write_text(text)
    os.utime(path, ns=(time.time_ns(), time.time_ns()))


def test_each_save_is_graded_once_after_it_settles(tmp_path):
    path = tmp_path / "sub.py"
    _save(path, "x = 1\n")
    grades, out = _Grades(), io.StringIO()
    thread = _start(Watcher(path, ROOT / "rubric.yaml", grades, out=out, poll=0.02,
                            debounce=0.05, max_grades=2))
    assert grades.done.acquire(timeout=60)
    time.sleep(0.3)                       # no change: no new grade
    assert grades.seen == ["x = 1\n"]
    _save(path, "x = 2\n")
    assert grades.done.acquire(timeout=60)
    thread.join(60)
    assert grades.seen == ["x = 1\n", "x = 2\n"]
    text = out.getvalue()
    assert "Total: 1" in text and "Total: 2" in text and "(grade 2)" in text


def test_a_missing_file_waits_instead_of_failing(tmp_path):
    path = tmp_path / "later.py"
    assert file_state(path) is None
    grades = _Grades()
    thread = _start(Watcher(path, ROOT / "rubric.yaml", grades, out=io.StringIO(), poll=0.02,
                            debounce=0.05, max_grades=1))
    time.sleep(0.3)
    assert grades.seen == []
    _save(path, "y = 1\n")
    assert grades.done.acquire(timeout=60)
    thread.join(60)


def test_a_changed_rubric_starts_the_watcher_again(tmp_path, monkeypatch):
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text("a: 1\n")
    path = tmp_path / "sub.py"
    _save(path, "x = 1\n")
    restarts = []
    grades = _Grades()
    watcher = Watcher(path, rubric, grades, out=io.StringIO(), poll=0.02, debounce=0.05,
                      max_grades=2, on_stale=lambda: restarts.append(grader_state(rubric)))
    thread = _start(watcher)
    assert grades.done.acquire(timeout=60)
    assert restarts == []
    rubric.write_text("a: 22\n")
    _save(path, "x = 2\n")
    assert grades.done.acquire(timeout=60)
    thread.join(60)
    assert len(restarts) == 1


def test_an_idle_watcher_lets_its_zygote_go(tmp_path, monkeypatch):
    stopped = []
    monkeypatch.setattr(watch.zygote, "shutdown", lambda: stopped.append(1))
    path = tmp_path / "sub.py"
    _save(path, "x = 1\n")
    grades = _Grades()
    watcher = Watcher(path, ROOT / "rubric.yaml", grades, out=io.StringIO(), poll=0.02,
                      debounce=0.02, idle=0.2, max_grades=2)
    thread = _start(watcher)
    assert grades.done.acquire(timeout=60)
    deadline = time.monotonic() + 30
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stopped == [1]                 # once, not at every poll
    _save(path, "x = 2\n")
    assert grades.done.acquire(timeout=60)
    thread.join(60)


def _zygotes_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"zygote_server.py" in command and ppid == pid:
            found.add(int(entry.name))
    return found


@pytest.mark.tf
def test_watch_grades_two_saves_with_one_zygote(tmp_path):
    from grader import engine, zygote
    from grader.report import to_text
    from grader.rubric import load_rubric

    if not zygote.possible():
        pytest.skip("no zygote on this platform")
    rubric = load_rubric(ROOT / "rubric.yaml")
    path = tmp_path / "tensorflow_tutorial.py"
    _save(path, REFERENCE.read_text())
    zygotes: list[set[int]] = []
    startups: list[str] = []

    def grade_once(file: Path) -> tuple[str, int]:
        report = engine.grade(file, rubric, ("public",), startup="zygote")
        zygotes.append(_zygotes_of(os.getpid()))
        startups.append(report.startup)
        return to_text(report), report.exit_code

    zygote.shutdown()
    out = io.StringIO()
    watcher = Watcher(path, ROOT / "rubric.yaml", grade_once, out=out, poll=0.05,
                      debounce=0.1, max_grades=2)
    thread = _start(watcher)
    deadline = time.monotonic() + 600
    while not zygotes and time.monotonic() < deadline:
        time.sleep(0.1)
    _save(path, REFERENCE.read_text().replace("tf.reduce_mean(tf.nn.softmax_cross",
                                              "tf.reduce_sum(tf.nn.softmax_cross"))
    thread.join(600)
    assert not thread.is_alive()
    text = out.getvalue()
    assert text.count("Total: ") == 2 and "did you sum over the batch" in text
    assert startups == ["zygote", "zygote"]
    assert len(zygotes[0]) == 1 and zygotes[1] == zygotes[0]   # the same zygote, warm


def test_watch_is_a_command(tmp_path):
    from conftest import grader_main
    code, _, err = grader_main(["watch", str(tmp_path / "x.py"), "--checks", "nope"])
    assert code == 2 and "invalid choice" in err
