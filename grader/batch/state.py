"""DIR's state: every student's row, what makes a rerun resume, and the files rendered from it.

A row is reused when its resume key (the graded bytes and everything else
that can change a score: :func:`context_digest`) is unchanged and it was
scored.  ``state.json`` and the gradebook are replaced whole after each change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from .. import engine, keys, summary
from ..files import PACKAGE_DIR, grader_sources, write_atomic
from ..notebook import NotebookError, extract
from ..outcome import ItemStatus, ProbeStatus, RowStatus
from ..report import Report, clean_line, to_json, to_text
from ..rubric import Rubric
from .discovery import Submission
from .grading import Outcome

__all__ = ["MAX_GRADED_BYTES", "Output", "context_digest", "graded_file", "resume_key",
           "row_status"]

MAX_GRADED_BYTES = 4 * 2**20         # the Python actually graded
# what cannot change a score (paths in the package; a folder for all it holds)
SCORE_NEUTRAL = frozenset({"batch/", "summary.py", "cli.py", "__main__.py", "distribute.py",
                           "defaults.py", "submission_file.py"})


def _score_neutral(path: Path) -> bool:
    relative = path.relative_to(PACKAGE_DIR).as_posix()
    return relative in SCORE_NEUTRAL or relative.split("/")[0] + "/" in SCORE_NEUTRAL


def context_digest(rubric: Rubric, visibilities: tuple[str, ...], isolation: str) -> str:
    """Everything besides the submission that can change a score."""
    h = hashlib.sha256()
    h.update(json.dumps([engine.GRADER_VERSION, rubric.digest, list(visibilities), isolation]).encode())
    if "hidden" in visibilities:  # the hidden inputs are derived from the grading key
        h.update(hashlib.sha256(b"grading key:" + keys.load_or_create(rubric.path)).digest())
    files = [p for p in grader_sources() if not _score_neutral(p)]
    names = [p.relative_to(PACKAGE_DIR).as_posix() for p in files]
    files += [engine.REFERENCE_PATH, engine.LOADER_PATH, engine.PROJECT_ROOT / "requirements.txt",
              engine.PROJECT_ROOT / "requirements-nodeps.txt"]
    names += [p.name for p in files[len(names):]]
    for name, path in zip(names, files):
        h.update(name.encode())
        if path.is_file():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def resume_key(graded: bytes, context: str) -> str:
    return hashlib.sha256(hashlib.sha256(graded).digest() + context.encode()).hexdigest()


def graded_file(sub: Submission) -> tuple[bytes, str]:
    """(contents, suffix) of the file to hand the engine: a notebook's code as Python, or
    a notebook that cannot be read as it is (the engine reports it as the student's error)."""
    if sub.path.suffix == ".ipynb":
        try:
            return extract(sub.path).encode("utf-8"), ".py"
        except NotebookError:
            return sub.path.read_bytes(), ".ipynb"
    return sub.path.read_bytes(), ".py"


def row_status(report: Report) -> RowStatus:
    """From the report's typed fields: how its checks failed, whether the import did."""
    failures = {c.failure for q in report.questions for c in q.checks
                if c.status == ItemStatus.ERROR}
    if ProbeStatus.TIMEOUT in failures:
        return RowStatus.TIMEOUT
    if ProbeStatus.CRASHED in failures:
        return RowStatus.CRASHED
    if report.import_error:
        return RowStatus.IMPORT_ERROR
    return RowStatus.GRADED


def _loaded(entry) -> dict | None:
    """A row of a saved state.json with its status typed; None for one this grader cannot use."""
    if not isinstance(entry, dict):
        return None
    try:
        return {**entry, "status": RowStatus(entry.get("status"))}
    except ValueError:
        return None


class Output:
    """DIR: the state of every student, and the files rendered from it."""

    def __init__(self, out: Path, rubric: Rubric, context: str, lms: str | None = None):
        self.out = out
        self.lms = lms
        self.rubric = rubric
        self.context = context
        self.reports = out / "reports"
        self.graded = out / "submissions"
        for d in (self.reports, self.graded):
            d.mkdir(parents=True, exist_ok=True)
        self.students: dict[str, dict] = {}
        self._unusable: set[str] = set()   # saved rows of an unknown status: files to clean
        try:
            saved = json.loads((out / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict) and isinstance(saved.get("students"), dict):
            for student, entry in saved["students"].items():
                row = _loaded(entry)
                if row is None:
                    self._unusable.add(student)
                else:
                    self.students[student] = row

    def reusable(self, student: str, key: str) -> bool:
        old = self.students.get(student)
        return (old is not None and old.get("key") == key and old["status"].scored
                and (self.reports / f"{student}.json").is_file())

    def forget(self, keep: set[str]) -> None:
        """Drop students no longer in SRC, and their files."""
        for student in [s for s in self.students if s not in keep]:
            del self.students[student]
            self._remove(student)
        for student in self._unusable - keep:
            self._remove(student)
        self._unusable.clear()

    def _remove(self, student: str, graded_copy: bool = True) -> None:
        for path in (self.reports / f"{student}.json", self.reports / f"{student}.txt"):
            path.unlink(missing_ok=True)
        if graded_copy:
            for suffix in (".py", ".ipynb"):
                (self.graded / f"{student}{suffix}").unlink(missing_ok=True)

    def mark_pending(self, sub: Submission, key: str) -> None:
        """A submission about to be graded: results for other content go now."""
        old = self.students.get(sub.student)
        if old is None or old.get("key") != key or not old["status"].scored:
            self._remove(sub.student, graded_copy=False)
            self.students[sub.student] = self._entry(sub, key, RowStatus.PENDING,
                                                     "not graded yet", 0.0)

    def record_report(self, sub: Submission, key: str, outcome: Outcome) -> dict:
        report = replace(outcome.report, submission=sub.source)
        write_atomic(self.reports / f"{sub.student}.json", to_json(report))
        write_atomic(self.reports / f"{sub.student}.txt", to_text(report))
        entry = self._entry(sub, key, row_status(report), clean_line(report.import_error)[:500],
                            outcome.seconds)
        entry.update(scores={q.id: q.score for q in report.questions}, total=report.total,
                     max_total=report.max_total, isolation=report.isolation,
                     mistakes={q.id: [clean_line(m)[:300] for m in q.mistakes]
                               for q in report.questions if q.mistakes},
                     flags=[f"{f.kind}: {clean_line(f.detail)[:300]}" for f in report.flags])
        self.students[sub.student] = entry
        return entry

    def record_error(self, sub: Submission, key: str, outcome: Outcome) -> dict:
        self._remove(sub.student, graded_copy=False)
        write_atomic(self.reports / f"{sub.student}.txt",
                     f"Grading {clean_line(sub.source)}\n\nYour submission could not be graded "
                     "automatically because of a problem on the grader's side, not in your code.\n"
                     "Your instructor has been told and will grade it.\n")
        entry = self._entry(sub, key, RowStatus.UNGRADABLE, outcome.error, outcome.seconds)
        self.students[sub.student] = entry
        return entry

    def record(self, sub: Submission, key: str, outcome: Outcome) -> dict:
        """A grade's outcome: its report, or the grader's fault."""
        if outcome.report is not None:
            return self.record_report(sub, key, outcome)
        return self.record_error(sub, key, outcome)

    def record_skip(self, sub: Submission) -> dict:
        self._remove(sub.student)
        write_atomic(self.reports / f"{sub.student}.txt",
                     f"Submission {clean_line(sub.source)}\n\nNot graded: {clean_line(sub.reason)}.\n"
                     f"The grader looks for {self.rubric.submission_name} (or a .ipynb notebook).\n")
        entry = self._entry(sub, "", sub.status, sub.reason, 0.0)
        self.students[sub.student] = entry
        return entry

    def _entry(self, sub: Submission, key: str, status: RowStatus, reason: str,
               seconds: float) -> dict:
        entry = {"source": sub.source, "status": status, "reason": reason, "key": key,
                 "seconds": round(seconds, 3), "info": sub.info}
        if key:
            entry["graded_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return entry

    def save(self) -> None:
        """state.json, then gradebook.csv: each replaced whole, never half-written."""
        state = {"version": 1, "context": self.context, "students": self.students}
        write_atomic(self.out / "state.json", json.dumps(state, indent=1, sort_keys=True))
        write_atomic(self.out / "gradebook.csv",
                     summary.gradebook_csv([i.id for i in self.rubric.items], self.students))
        if self.lms == "canvas":
            write_atomic(self.out / "canvas_import.csv",
                         summary.canvas_csv(self.rubric, self.students))
