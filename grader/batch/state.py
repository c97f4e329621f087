"""DIR's state: every student's row, what makes a rerun resume, and the files rendered from it.

A row's measurements (``measurements/students/<student>.results``, see
``ledger.py``) are reused when its resume key (the graded bytes and what
every measurement depends on) is unchanged and each task's measurement key
is the current one; its score is then composed again, with no child, from
them, the rubric, the manual layer (``manual.json``) and the late policy.
``state.json`` and the gradebook are replaced whole after each change.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from .. import engine, keys, ledger, lms, summary
from ..files import PACKAGE_DIR, grader_sources, write_atomic
from ..notebook import NotebookError, extract
from ..outcome import Flag, FlagKind, ItemStatus, ProbeStatus, RowStatus
from ..report import Report, clean_line
from ..rubric import Rubric
from ..scoring import _import_error, build_report
from .discovery import Submission
from .grading import Outcome

__all__ = ["MAX_GRADED_BYTES", "Output", "context_digest", "graded_file", "resume_key",
           "row_status"]

MAX_STATE_BYTES = 256 * 2**20        # state.json, read back
MAX_MANUAL_BYTES = 16 * 2**20        # manual.json, read back

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


def _read_json(path: Path, max_bytes: int):
    """A JSON file this batch wrote, read back with its size bounded; None if unusable."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError:
        return None
    if len(data) > max_bytes:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _write_derived(path: Path, data: str) -> None:
    """A file rendered from the state (a report): replaced whole, but not synced to disk
    (state.json is, and renders it again), and left alone when it is unchanged."""
    raw = data.encode("utf-8")
    try:
        if path.stat().st_size == len(raw) and path.read_bytes() == raw:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(raw)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Stored(dict):
    """A row's stored outputs by task id, read from its file only when one is needed."""

    def __init__(self, output: "Output", student: str):
        super().__init__()
        self._output, self._student, self._read = output, student, False

    def __missing__(self, task_id: str):
        if not self._read:
            self._read = True
            _, outputs = self._output._stored(self._student)
            for task in self._output.tasks:
                key, out = outputs.get(task.id, ("", None))
                if out is None or key != self._output.keys[task.id]:
                    raise ledger.LedgerError(f"{task.item.id} needs a new run")
                self[task.id] = out
            return self[task_id]
        raise KeyError(task_id)


def _stored_flags(value: object) -> tuple[Flag, ...]:
    """The integrity flags kept with a row's facts (``[[kind, detail], ...]``); what is not
    one of them is left out."""
    flags = []
    for entry in value[:50] if isinstance(value, list) else []:
        try:
            kind, detail = entry
            flags.append(Flag(FlagKind(kind), clean_line(detail)[:300]))
        except (TypeError, ValueError):
            continue
    return tuple(flags)


class Output:
    """DIR: the state of every student, and the files rendered from it.

    ``context``: what every measurement depends on (``ledger.measurement_base``);
    it enters each row's resume key.  ``plan`` gives the tasks and their keys,
    ``set_reference`` the reference's outputs: a row is then composed from its
    stored measurements (``recompose``) or from a new grade (``record``).
    """

    def __init__(self, out: Path, rubric: Rubric, context: str, lms: str | None = None,
                 canvas_column: str | None = None, anonymise: bool | None = None):
        self.out = out
        self.rubric = rubric
        self.context = context
        self.reports = out / "reports"
        self.graded = out / "submissions"
        self.measured = out / "measurements" / "students"
        self.reference_file = out / "measurements" / "reference.results"
        for d in (self.reports, self.graded, self.measured):
            d.mkdir(parents=True, exist_ok=True)
        self.students: dict[str, dict] = {}
        self._unusable: set[str] = set()   # saved rows of an unknown status: files to clean
        saved = _read_json(out / "state.json", MAX_STATE_BYTES)
        saved = saved if isinstance(saved, dict) else {}
        if isinstance(saved.get("students"), dict):
            for student, entry in saved["students"].items():
                row = _loaded(entry)
                if row is None:
                    self._unusable.add(student)
                else:
                    self.students[student] = row
        options = saved.get("options") if isinstance(saved.get("options"), dict) else {}
        given = {"lms": lms, "canvas_column": canvas_column, "anonymise": anonymise}
        self.options = {k: v if v is not None else options.get(k) for k, v in given.items()}
        # how the class was graded, kept through a rescore (batch sets them again)
        self.options.update({k: options[k] for k in ("isolation", "visibilities", "grading_key")
                             if k in options})
        self.lms = self.options["lms"]
        salt = saved.get("salt")
        self.salt = salt if isinstance(salt, str) and salt else secrets.token_hex(8)
        self.manual = self._load_manual()
        self.extensions = self._load_extensions()
        self.tasks: list = []
        self.keys: dict[str, str] = {}
        self.verdict_keys: dict[str, str] = {}
        self.expected: dict = {}
        self.visibilities: tuple[str, ...] = ("public", "hidden")
        self.partial: dict[str, list[str]] = {}   # student -> the task ids rerun now
        self.warnings: list[str] = []

    # ------------------------------------------------------------ the layers

    def _load_manual(self) -> dict[str, dict[str, ledger.Manual]]:
        saved = _read_json(self.out / "manual.json", MAX_MANUAL_BYTES)
        scores = saved.get("scores") if isinstance(saved, dict) else None
        manual: dict[str, dict[str, ledger.Manual]] = {}
        items = {i.id: i.points for i in self.rubric.items}
        for student, given in (scores.items() if isinstance(scores, dict) else ()):
            for item, value in (given.items() if isinstance(given, dict) else ()):
                points = value.get("points") if isinstance(value, dict) else "bad"
                comment = value.get("comment", "") if isinstance(value, dict) else ""
                if item not in items or not isinstance(comment, str) or not (
                        points is None or isinstance(points, (int, float))
                        and not isinstance(points, bool) and 0 <= points <= items[item]):
                    continue   # an item no longer in the rubric, or a score out of its range
                manual.setdefault(student, {})[item] = ledger.Manual(points, comment)
        return manual

    def _save_manual(self) -> None:
        scores = {s: {i: {"points": m.points, "comment": m.comment} for i, m in sorted(given.items())}
                  for s, given in sorted(self.manual.items()) if given}
        write_atomic(self.out / "manual.json", json.dumps({"version": 1, "scores": scores},
                                                          indent=1))

    def _load_extensions(self) -> dict[str, float]:
        policy = self.rubric.late_policy
        if policy is None or policy.extensions is None:
            return {}
        where = f"late_policy.extensions {policy.extensions.name}"
        rows = ledger.read_table(policy.extensions, ("student", "extra_hours"), "extensions file")
        return ledger.parse_extensions(rows, where)

    def anonymous(self, student: str) -> str:
        """A stable id for ``student`` that does not say who it is (review pages)."""
        return "anon-" + hashlib.sha256(f"{self.salt}:{student}".encode()).hexdigest()[:10]

    def merge_manual(self, path: Path) -> int:
        """Take the scores and comments of a ``--manual`` CSV into the manual layer (a line
        replaces what the layer held for its student and item); returns the lines taken."""
        rows = ledger.read_table(path, ("student", "item", "points"), "--manual file")
        names = {name: name for name in self.students}
        names.update({self.anonymous(name): name for name in self.students})
        found, warnings = ledger.parse_manual(rows, path.name, {i.id: i.points for i in
                                                                self.rubric.items}, names)
        self.warnings += warnings
        for (student, item), given in found.items():
            self.manual.setdefault(student, {})[item] = given
            base = self.students[student].get("override_base")
            if isinstance(base, dict):
                base.pop(item, None)   # a new override: reviewed now
        self._save_manual()
        return len(found)

    # ------------------------------------------------------------ measurements

    def plan(self, tasks: list, keys: dict[str, str], visibilities: tuple[str, ...]) -> None:
        self.tasks, self.keys, self.visibilities = tasks, keys, visibilities
        self.verdict_keys = ledger.verdict_keys(keys)

    def _max_bytes(self) -> int:
        return (4 * int(self.rubric.limits["result_mib"]) + 1) * 2**20

    def stored_reference(self) -> dict | None:
        """The reference's outputs stored here, when each was taken under the current key."""
        try:
            _, outputs = ledger.read_measurements(self.reference_file, self._max_bytes())
        except ledger.LedgerError:
            return None
        found = {t.id: outputs[t.id][1] for t in self.tasks
                 if t.id in outputs and outputs[t.id][0] == self.keys[t.id] and outputs[t.id][1].ok}
        return found if len(found) == len(self.tasks) else None

    def set_reference(self, expected: dict) -> None:
        self.expected = expected
        if self.stored_reference() is None:
            write_atomic(self.reference_file,
                         ledger.encode_measurements({t.id: expected[t.id] for t in self.tasks},
                                                    self.keys, {}))

    def _stored(self, student: str) -> tuple[dict, dict]:
        return ledger.read_measurements(self.measured / f"{student}.results", self._max_bytes())

    def stale(self, student: str, key: str) -> list[str]:
        """The tasks of ``student`` that need a run: all of them unless the row was scored from
        these bytes and its measurements are stored, else those whose key changed."""
        everything = [t.id for t in self.tasks]
        old = self.students.get(student)
        if old is None or old.get("key") != key or not old["status"].scored \
                or not isinstance(old.get("auto"), dict) or not isinstance(old.get("measured"), dict) \
                or not (self.measured / f"{student}.results").is_file():
            return everything
        return [t for t in everything if old["measured"].get(t) != self.keys[t]]

    def _report(self, student: str, source: str, got: dict, facts: dict,
                verdicts: ledger.Verdicts | None = None) -> Report:
        text = {k: facts.get(k, "") for k in ("problem", "isolation", "confinement", "startup",
                                               "import_error")}
        if not all(isinstance(v, str) for v in text.values()):
            raise ledger.LedgerError("the stored facts are malformed")
        extracted = ""
        if facts.get("extracted") is True:
            copy = self.graded / f"{student}.py"
            try:
                with open(copy, "rb") as f:
                    extracted = f.read(MAX_GRADED_BYTES).decode("utf-8", "replace")
            except OSError:
                raise ledger.LedgerError("the graded copy of the notebook is missing") from None
        return build_report(self.rubric, self.tasks, got, self.expected,
                            visibilities=self.visibilities, submission=source,
                            problem=text["problem"][:2000], extracted=extracted,
                            isolation=text["isolation"][:40], confinement=text["confinement"][:200],
                            startup=text["startup"][:40], version=engine.GRADER_VERSION,
                            verdicts=verdicts, keys=self.verdict_keys,
                            import_error=text["import_error"][:2000] if "import_error" in facts
                            else None, flags=_stored_flags(facts.get("flags")),
                            student_name=Path(source).name)

    def recompose(self, student: str) -> dict:
        """Score a row again from its stored measurements (no child); LedgerError when they
        cannot be used (the row then needs a new run).  The outputs are read only for the
        checks whose verdict is not kept with the row."""
        entry = self.students[student]
        measured = entry.get("measured")
        facts = entry.get("facts")
        if not isinstance(measured, dict) or not isinstance(facts, dict):
            raise ledger.LedgerError("no stored measurements")
        stale = [t.item.id for t in self.tasks if measured.get(t.id) != self.keys[t.id]]
        if stale:
            raise ledger.LedgerError(f"{stale[0]} needs a new run")
        verdicts = ledger.Verdicts(entry.get("verdicts"))
        report = self._report(student, str(entry.get("source", "")), _Stored(self, student),
                              facts, verdicts)
        status = row_status(report)
        entry = {**entry, "status": status, "reason": clean_line(report.import_error)[:500],
                 "verdicts": verdicts.saved()}
        return self._record_scored(student, entry, report, None)

    # ------------------------------------------------------------ rows

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
            (self.measured / f"{student}.results").unlink(missing_ok=True)

    def mark_pending(self, sub: Submission, key: str) -> None:
        """A submission about to be graded: results for other content go now."""
        old = self.students.get(sub.student)
        if old is None or old.get("key") != key or not old["status"].scored:
            self._remove(sub.student, graded_copy=False)
            (self.measured / f"{sub.student}.results").unlink(missing_ok=True)
            self.students[sub.student] = self._entry(sub, key, RowStatus.PENDING,
                                                     "not graded yet", 0.0)

    def record_report(self, sub: Submission, key: str, outcome: Outcome) -> dict:
        measured = getattr(outcome, "measured", None)
        got = None
        if measured is not None and self.tasks:
            got = dict(measured["got"])
            facts = measured["facts"]
            if sub.student in self.partial:    # the other tasks' outputs stand
                try:
                    _, outputs = self._stored(sub.student)
                except ledger.LedgerError:
                    outputs = {}
                for t in self.tasks:
                    if t.id not in got and t.id in outputs:
                        got[t.id] = outputs[t.id][1]
            if all(t.id in got for t in self.tasks):
                facts = {**facts, "import_error": _import_error(got, str(facts.get("problem") or ""))}
                write_atomic(self.measured / f"{sub.student}.results",
                             ledger.encode_measurements(got, self.keys, facts))
                verdicts = ledger.Verdicts()
                report = self._report(sub.student, sub.source, got, facts, verdicts)
            else:
                got, report = None, replace(outcome.report, submission=sub.source)
        else:
            report = replace(outcome.report, submission=sub.source)
        entry = self._entry(sub, key, row_status(report), clean_line(report.import_error)[:500],
                            outcome.seconds)
        if got is not None:
            entry.update(verdicts=verdicts.saved(), facts=facts,
                         measured={t.id: self.keys[t.id] for t in self.tasks})
        old = self.students.get(sub.student) or {}
        if isinstance(old.get("override_base"), dict):
            entry["override_base"] = old["override_base"]
        return self._record_scored(sub.student, entry, report, got)

    def _record_scored(self, student: str, entry: dict, report: Report, got: dict | None) -> dict:
        manual_ids = set(ledger.manual_items(self.rubric))
        entry.update(auto={q.id: None if q.status == ItemStatus.PENDING else q.score
                           for q in report.questions},
                     max_total=report.max_total, isolation=report.isolation,
                     mistakes={q.id: [clean_line(m)[:300] for m in q.mistakes]
                               for q in report.questions if q.mistakes and not q.unanswered},
                     unanswered=[q.id for q in report.questions if q.unanswered],
                     flags=[f"{f.kind}: {clean_line(f.detail)[:300]}" for f in report.flags])
        if got is not None:
            entry["answers"] = {t.item.id: lms.answer_text(got[t.id]) for t in self.tasks
                                if t.item.id in manual_ids and t.id in got}
        self._compose(student, entry)
        json_text, text = lms.student_report(report, entry, self.manual.get(student, {}))
        _write_derived(self.reports / f"{student}.json", json_text)
        _write_derived(self.reports / f"{student}.txt", text)
        self.students[student] = entry
        return entry

    def _compose(self, student: str, entry: dict) -> None:
        info = entry.get("info") or {}
        extra = next((self.extensions[k] for k in (student, info.get("user_id"), info.get("email"),
                                                   info.get("login")) if k in self.extensions), 0.0)
        entry.update(ledger.compose_row(entry, [i.id for i in self.rubric.items],
                                        self.manual.get(student, {}), self.rubric.late_policy,
                                        extra))

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
        state = {"version": 2, "context": self.context, "options": self.options,
                 "salt": self.salt, "students": self.students}
        write_atomic(self.out / "state.json", json.dumps(state, sort_keys=True))
        write_atomic(self.out / "gradebook.csv",
                     summary.gradebook_csv([i.id for i in self.rubric.items], self.students))
        if self.lms == "canvas":
            write_atomic(self.out / "canvas_import.csv",
                         lms.canvas_csv(self.rubric, self.students, self.options["canvas_column"]))

    def finish(self) -> None:
        """What is written once the rows are done: the review pages of the manual items
        and the students' feedback, zipped for upload."""
        self.save()
        lms.write_review(self.out / "review", self.rubric, self.students, self.manual,
                         self.anonymous if self.options["anonymise"] else None)
        lms.write_feedback_zip(self.out / "feedback.zip", self.reports, self.students)
