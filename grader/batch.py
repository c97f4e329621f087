"""``python -m grader batch SRC --out DIR``: grade a whole class.

SRC is a folder or a ``.zip`` of one (a single folder wrapping everything is
opened).  The layouts recognised, which may be mixed:

``files``       one file per student: ``<student>.py`` or ``<student>.ipynb``;
``folders``     one folder per student, ``<student>/...``, holding the submission;
``gradescope``  a Gradescope export: ``submission_metadata.yml`` beside
                ``submission_<id>/`` folders (student names from the metadata);
``canvas``      a Canvas export: ``<name>[_LATE]_<userid>_<submissionid>_<file>``.

In a student's folder (or among a Canvas student's files) the submission is
the file named as the rubric's ``submission_name`` (``.py``, else ``.ipynb``),
else the only ``.py`` or ``.ipynb`` file; ``mnist_loader.py`` (provided) is
never taken for one.  Notebooks are graded as their code cells (see
``notebook.py``), as ``check`` grades them; a notebook that cannot be read is
graded too, as the student's error.  Whatever is not graded gets a row saying
why: its status is ``skipped-not-python``, ``skipped-no-submission``,
``skipped-ambiguous``, ``skipped-too-large`` or ``skipped-not-a-file``.
Hidden files, ``__MACOSX/`` and the like are ignored and listed in summary.json.

DIR receives ``gradebook.csv`` (``student,user_id,late,source,<item ids>,total,status``,
one row per student), ``reports/<student>.json`` (what ``check --format json``
prints) and ``reports/<student>.txt`` (the student's feedback),
``submissions/<student>.py`` (the exact file graded: a notebook's extracted
code), ``summary.json``, ``score_distribution.png``, ``summary.html``,
``state.json`` (what makes a rerun resume) and, with ``--lms canvas``,
``canvas_import.csv`` (Canvas's gradebook import).

A row's name (``<student>``) is unique, and never another student's name:
the name from the export or the file, ``+<user id>`` when the export has one,
and ``+<digest of the source>`` for names that would otherwise collide
(``+`` appears in no name of its own).

A graded row's status is ``graded``; ``import-error`` when the file could not
be imported (every item lost, the error said once); ``timeout`` / ``crashed``
when an item ran out of time or killed its process (the score counts what did
run).  A grader fault on one submission gives ``ungradable`` and an empty
score, never a zero.  A rerun skips every submission whose graded bytes, rubric, reference
and grader code are unchanged (``--force`` regrades); the gradebook is
rewritten atomically after each submission, so Ctrl-C leaves one that holds
everything that finished.

``--ray [ADDRESS]`` grades on a Ray cluster instead of local threads
(``ray_batch.py``); everything else is as here.

Exit status: 0 every submission found was graded or skipped with a reason,
1 some are ungradable, 2 a usage error or a fault that affects every
submission (a bad rubric, a failing reference: nothing is graded),
130 interrupted.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import yaml

from . import engine, sandbox, summary
from .errors import GraderError, UngradableError, UsageError
from .notebook import NotebookError, extract
from .outcome import RowStatus
from .report import Report, clean_line, to_json, to_text
from .rubric import Rubric, load_rubric

__all__ = ["add_arguments", "run_batch", "discover", "Submission"]

GRADED, TIMEOUT, CRASHED, UNGRADABLE, PENDING = (RowStatus.GRADED, RowStatus.TIMEOUT, RowStatus.CRASHED,
                                                 RowStatus.UNGRADABLE, RowStatus.PENDING)
IMPORT_ERROR = RowStatus.IMPORT_ERROR
SCORED = summary.SCORED     # graded, import-error, timeout, crashed
SOURCE_SUFFIXES = (".py", ".ipynb")
PROVIDED = frozenset({"mnist_loader.py"})
IGNORED_NAMES = frozenset({"__MACOSX", "__pycache__", ".ipynb_checkpoints", "Thumbs.db",
                           "desktop.ini"})
MAX_SOURCE_BYTES = 32 * 2**20        # a submission file (notebooks carry their outputs)
MAX_GRADED_BYTES = 4 * 2**20         # the Python actually graded
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_BYTES = 2 * 2**30
MEMORY_PER_WORKER = 2**30            # a grading child peaks near 700 MiB
CANVAS_NAME = re.compile(r"^(?P<name>[^_]+)(?P<late>_LATE)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)$")
SCORE_NEUTRAL_MODULES = frozenset({"batch.py", "summary.py", "cli.py",
                                   "__main__.py", "distribute.py", "ray_batch.py"})


# ------------------------------------------------------------------ the CLI

_EPILOG = """\
layouts of SRC (detected; they may be mixed):
  files        <student>.py or <student>.ipynb, one per student
  folders      <student>/... holding tensorflow_tutorial.py (or .ipynb, or one .py)
  gradescope   submission_metadata.yml beside submission_<id>/ folders
  canvas       <name>[_LATE]_<userid>_<submissionid>_<file>
  A .zip of any of them; a single folder wrapping everything is opened.

DIR gets gradebook.csv (student,user_id,late,source,<items>,total,status),
reports/<student>.json and .txt, submissions/<student>.py (the file graded),
summary.json, score_distribution.png, summary.html, state.json, and with
--lms canvas canvas_import.csv (Canvas: Grades > Import).

status: graded, import-error (the file does not import), timeout, crashed
(scored), ungradable (a grader fault: no score),
pending (interrupted before its turn), skipped-* (not graded: the reason is in
summary.json and reports/<student>.txt).

--ray grades on Ray instead of local workers: with no ADDRESS on a Ray
instance started for this run, with auto or host:port (or ray://host:port)
on a running cluster. Put --ray after SRC. Same output, same scores.

exit status: 0 done, 1 done but some ungradable, 2 usage error or a fault that
affects every submission (nothing graded), 130 interrupted."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Grade a whole class: a gradebook, feedback and a summary."
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("src", type=Path, metavar="SRC",
                        help="a folder or a .zip: one file or folder per student, or a "
                             "Gradescope or Canvas export")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where the gradebook, reports and summary go")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="submissions graded at once (default: the number of cores)")
    parser.add_argument("--force", action="store_true",
                        help="regrade submissions already graded with the same content")
    parser.add_argument("--rubric", type=Path, default=engine.PROJECT_ROOT / "rubric.yaml")
    parser.add_argument("--isolation", choices=("auto", "full", "basic"), default="auto")
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="grade on Ray: no ADDRESS starts a local Ray instance for this run; "
                             "auto, host:port or ray://host:port joins a running cluster "
                             "(--jobs then caps the grades at once; default: its CPUs)")
    parser.add_argument("--retries", type=int, default=2, metavar="N",
                        help="with --ray: times a grade is retried when its Ray worker or node "
                             "dies (default: 2); then the row is ungradable")
    parser.add_argument("--lms", choices=("canvas",), default=None,
                        help="also write the LMS's gradebook import: canvas_import.csv "
                             "(rows with a Canvas user id; the column is the rubric's assignment)")


# ------------------------------------------------------------ finding work

@dataclass(frozen=True)
class Submission:
    """One student's entry: a file to grade, or the reason there is none."""

    student: str          # the row's name: unique, never another's, safe as a file name
    source: str           # where it came from, relative to SRC
    path: Path | None     # the .py or .ipynb to grade
    status: str = ""      # "" to grade, else a skipped-... status
    reason: str = ""
    info: dict = field(default_factory=dict)   # name, user_id, late, sid, email... from an export


@dataclass
class Discovery:
    layout: str
    submissions: list[Submission]
    ignored: list[dict]


def _ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name in IGNORED_NAMES


def safe_name(text: str) -> str:
    """A student name usable as a file name: ASCII letters, digits, ``._-``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text).strip("._-")
    return name[:80] or "student"


def _walk(folder: Path, root: Path, ignored: list[dict]) -> list[Path]:
    """Regular files under ``folder``, in a stable order, noting what is ignored."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        for name in sorted(dirnames):
            if _ignored(base / name):
                ignored.append({"path": str((base / name).relative_to(root)),
                                "reason": "hidden or system folder"})
        dirnames[:] = sorted(d for d in dirnames if not _ignored(base / d))
        for name in sorted(filenames):
            path = base / name
            if _ignored(path):
                ignored.append({"path": str(path.relative_to(root)), "reason": "hidden or system file"})
            else:
                found.append(path)
    return found


def _plain_name(path: Path) -> str:
    """The file name without Canvas's resubmission suffix: ``x-1.py`` -> ``x.py``."""
    return re.sub(r"-\d+$", "", path.stem) + path.suffix


def _pick(files: list[Path], rubric: Rubric, root: Path) -> tuple[Path | None, str, str]:
    """(the submission, "", "") among one student's files, or (None, status, reason)."""
    names = ", ".join(sorted({p.name for p in files}))[:300]
    candidates = [p for p in files if p.suffix in SOURCE_SUFFIXES and p.name not in PROVIDED]
    wanted = Path(rubric.submission_name)
    for suffix in (".py", ".ipynb"):
        named = [p for p in candidates if _plain_name(p) == wanted.stem + suffix]
        if named:
            shallowest = min(named, key=lambda p: (len(p.relative_to(root).parts), str(p)))
            return shallowest, "", ""
    if len(candidates) == 1:
        return candidates[0], "", ""
    if candidates:
        return None, "skipped-ambiguous", (f"several Python files and none named "
                                           f"{rubric.submission_name}: {names}")
    if files:
        return None, "skipped-not-python", f"no .py or .ipynb file: {names}"
    return None, "skipped-no-submission", "the folder is empty"


def _as_submission(student: str, source: str, path: Path | None, status: str = "",
                   reason: str = "", info: dict | None = None) -> Submission:
    if path is not None and not status:
        info_ = os.lstat(path)
        if not stat.S_ISREG(info_.st_mode):
            return Submission(student, source, None, "skipped-not-a-file",
                              "a link or special file, not a regular file", info or {})
        if info_.st_size > MAX_SOURCE_BYTES:
            return Submission(student, source, None, "skipped-too-large",
                              f"{info_.st_size / 2**20:.0f} MiB is more than "
                              f"{MAX_SOURCE_BYTES // 2**20} MiB", info or {})
        if path.suffix not in SOURCE_SUFFIXES:
            return Submission(student, source, None, "skipped-not-python",
                              f"{path.name} is not a .py or .ipynb file", info or {})
    return Submission(student, source, path, status, reason, info or {})


def _gradescope(root: Path, rubric: Rubric, ignored: list[dict]) -> list[tuple]:
    try:
        text = (root / "submission_metadata.yml").read_text(encoding="utf-8", errors="replace")
        metadata = yaml.safe_load(text[: 16 * 2**20]) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"submission_metadata.yml cannot be read: {exc}") from None
    if not isinstance(metadata, dict):
        metadata = {}
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not _ignored(p)):
        entry = metadata.get(folder.name) if isinstance(metadata.get(folder.name), dict) else {}
        people = [s for s in entry.get(":submitters", []) or [] if isinstance(s, dict)]
        name = " & ".join(str(s.get(":name", "")).strip() for s in people).strip(" &")
        info = {"submission": folder.name}
        for key in ("sid", "email"):
            values = [str(s[f":{key}"]) for s in people if s.get(f":{key}")]
            if values:
                info[key] = ", ".join(values)
        if info.get("sid") or info.get("email"):
            info["user_id"] = info.get("sid") or info["email"]
        info["late"] = _gradescope_late(entry, metadata)
        path, status, reason = _pick(_walk(folder, root, ignored), rubric, root)
        source = str(path.relative_to(root)) if path else folder.name + "/"
        found.append((name or folder.name, source, path, status, reason, info))
    for path in sorted(p for p in root.iterdir() if p.is_file() and not _ignored(p)):
        if path.name != "submission_metadata.yml":
            ignored.append({"path": path.name, "reason": "not a submission folder of the export"})
    return found


def _gradescope_late(entry: dict, metadata: dict) -> bool:
    """Late when the export says so, or when it was created after the due date it gives."""
    if entry.get(":late") is not None:
        return bool(entry.get(":late"))
    created = entry.get(":created_at")
    due = (entry.get(":assignment") or {}).get(":due_date") if isinstance(
        entry.get(":assignment"), dict) else None
    try:
        return bool(created and due and _as_time(created) > _as_time(due))
    except (TypeError, ValueError):
        return False


def _as_time(value) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _canvas(files: list[Path], rubric: Rubric, root: Path) -> list[tuple]:
    groups: dict[tuple[str, str], list[Path]] = {}
    late: set[tuple[str, str]] = set()
    for path in files:
        match = CANVAS_NAME.match(path.name)
        key = (match["name"], match["uid"])
        groups.setdefault(key, []).append(path)
        if match["late"]:
            late.add(key)
    found = []
    for key in sorted(groups):
        paths = groups[key]
        renamed = {p: Path(CANVAS_NAME.match(p.name)["file"]) for p in paths}
        chosen, status, reason = _pick([renamed[p] for p in paths], rubric, Path("."))
        path = next((p for p in paths if renamed[p] == chosen), None) if chosen else None
        info = {"user_id": key[1], "canvas_user_id": key[1], "late": key in late}
        source = path.name if path else f"{key[0]}_{key[1]}_*"
        found.append((key[0], source, path, status, reason, info))
    return found


def _unwrap(root: Path, rubric: Rubric) -> Path:
    """Open a single folder that wraps everything (as zips often have)."""
    entries = [p for p in root.iterdir() if not _ignored(p)]
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
        return root
    inner = [p for p in entries[0].iterdir() if not _ignored(p)]
    if all(p.is_file() for p in inner) and any(
            _plain_name(p) in (rubric.submission_name, Path(rubric.submission_name).stem + ".ipynb")
            for p in inner):
        return root  # one student's folder, not a wrapper
    return entries[0]


def discover(root: Path, rubric: Rubric, exclude: Path | None = None) -> Discovery:
    """Every student entry under ``root`` (an unpacked SRC), in a stable order."""
    root = _unwrap(root, rubric)
    ignored: list[dict] = []
    found: list[tuple] = []
    if (root / "submission_metadata.yml").is_file():
        layout = "gradescope"
        found = _gradescope(root, rubric, ignored)
    else:
        files, folders = [], []
        for p in sorted(root.iterdir()):
            if exclude is not None and p.resolve() == exclude:
                continue
            if exclude is not None and p.is_dir() and exclude.is_relative_to(p.resolve()):
                ignored.append({"path": p.name, "reason": "holds the output folder (--out)"})
            elif _ignored(p):
                ignored.append({"path": p.name, "reason": "hidden or system file"})
            elif p.is_dir() and not p.is_symlink():
                folders.append(p)
            elif p.name in PROVIDED:
                ignored.append({"path": p.name, "reason": "a file provided with the assignment"})
            else:
                files.append(p)
        canvas = [p for p in files if CANVAS_NAME.match(p.name)]
        kinds = []
        if canvas and len(canvas) * 2 >= len(files):
            kinds.append("canvas")
            found += _canvas(canvas, rubric, root)
            files = [p for p in files if p not in canvas]
        if files:
            kinds.append("files")
            found += [(p.stem, p.name, p, "", "", {}) for p in files]
        if folders:
            kinds.append("folders")
            for folder in folders:
                path, status, reason = _pick(_walk(folder, root, ignored), rubric, root)
                source = str(path.relative_to(root)) if path else folder.name + "/"
                found.append((folder.name, source, path, status, reason, {}))
        layout = "+".join(kinds) if kinds else "empty"
    names = row_names([(raw, source, info.get("user_id", "")) for raw, source, _, _, _, info
                       in found])
    submissions = [_as_submission(name, source, path, status, reason, {"name": raw} | info)
                   for name, (raw, source, path, status, reason, info) in zip(names, found)]
    submissions.sort(key=lambda s: s.student.lower())
    return Discovery(layout, submissions, ignored)


def row_names(entries: list[tuple[str, str, str]]) -> list[str]:
    """A unique row name per (name, source, user id), never equal to another's own name.

    ``safe_name(name)``, then ``+<user id>`` where there is one; names that still
    collide (case-insensitively: file systems) each get ``+<digest of the source>``.
    ``safe_name`` never writes ``+``, so a suffixed name is nobody's plain name,
    and each suffix depends on its own entry only, not on who else is in the class.
    """
    bases = []
    for name, _, user_id in entries:
        base = safe_name(name)
        bases.append(f"{base}+{safe_name(user_id)}" if user_id else base)
    counts: dict[str, int] = {}
    for base in bases:
        counts[base.lower()] = counts.get(base.lower(), 0) + 1
    names = []
    for base, (_, source, user_id) in zip(bases, entries):
        if counts[base.lower()] > 1:
            digest = hashlib.sha256(f"{source}\0{user_id}".encode()).hexdigest()[:10]
            base = f"{base}+{digest}"
        names.append(base)
    return names


def _extract_zip(archive: Path, dest: Path) -> list[dict]:
    """Unpack ``archive`` safely (no path escapes, capped sizes); returns what was left out."""
    left_out = []
    total = 0
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{archive}: not a readable zip file ({exc})") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise UsageError(f"{archive}: {len(members)} entries is more than {MAX_ZIP_MEMBERS}")
        root = dest.resolve()
        for member in members:
            name = member.filename.replace("\\", "/")
            target = (root / name).resolve()
            if member.is_dir():
                continue
            if not str(target).startswith(str(root) + os.sep) or name.startswith("/"):
                left_out.append({"path": member.filename, "reason": "a path outside the archive"})
                continue
            if stat.S_ISLNK(member.external_attr >> 16):
                left_out.append({"path": member.filename, "reason": "a symbolic link"})
                continue
            limit = min(MAX_SOURCE_BYTES, MAX_ZIP_BYTES - total)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as dst:
                    copied = 0
                    while chunk := src.read(1 << 20):
                        copied += len(chunk)
                        if copied > limit:
                            raise ValueError("too large")
                        dst.write(chunk)
                total += copied
            except (ValueError, RuntimeError, OSError, zipfile.BadZipFile, EOFError) as exc:
                target.unlink(missing_ok=True)
                reason = ("larger than the limits" if str(exc) == "too large"
                          else f"cannot be unpacked ({type(exc).__name__})")
                left_out.append({"path": member.filename, "reason": reason})
    return left_out


# --------------------------------------------------------- what is graded

def _context_digest(rubric: Rubric, visibilities: tuple[str, ...], isolation: str) -> str:
    """Everything besides the submission that can change a score."""
    h = hashlib.sha256()
    h.update(json.dumps([engine.GRADER_VERSION, rubric.digest, list(visibilities), isolation]).encode())
    files = sorted(p for p in engine.PACKAGE_DIR.rglob("*.py") if p.name not in SCORE_NEUTRAL_MODULES)
    files += [engine.REFERENCE_PATH, engine.LOADER_PATH, engine.PROJECT_ROOT / "requirements.txt",
              engine.PROJECT_ROOT / "requirements-nodeps.txt"]
    for path in files:
        h.update(path.name.encode())
        if path.is_file():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _graded_file(sub: Submission) -> tuple[bytes, str]:
    """(contents, suffix) of the file to hand the engine: a notebook's code as Python, or
    a notebook that cannot be read as it is (the engine reports it as the student's error)."""
    if sub.path.suffix == ".ipynb":
        try:
            return extract(sub.path).encode("utf-8"), ".py"
        except NotebookError:
            return sub.path.read_bytes(), ".ipynb"
    return sub.path.read_bytes(), ".py"


def _row_status(report: Report) -> str:
    failures = {c.failure for q in report.questions for c in q.checks if c.status == "error"}
    if TIMEOUT in failures:
        return TIMEOUT
    if CRASHED in failures:
        return CRASHED
    if report.import_error:
        return IMPORT_ERROR
    return GRADED


@dataclass(frozen=True)
class _Outcome:
    report: Report | None
    error: str
    seconds: float


def _grade(path: Path, rubric: Rubric, visibilities: tuple[str, ...], isolation: str) -> _Outcome:
    started = time.monotonic()
    try:
        report = engine.grade(path, rubric, visibilities, isolation=isolation)
    except GraderError as exc:
        return _Outcome(None, str(exc), time.monotonic() - started)
    except Exception as exc:  # a bug of ours on this one submission: the batch goes on
        return _Outcome(None, f"internal grader error: {type(exc).__name__}: {exc}",
                        time.monotonic() - started)
    return _Outcome(report, "", time.monotonic() - started)


# ------------------------------------------------------------- the output

def _write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Output:
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
        try:
            saved = json.loads((out / "state.json").read_text(encoding="utf-8"))
            if isinstance(saved, dict) and isinstance(saved.get("students"), dict):
                self.students = saved["students"]
        except (OSError, ValueError):
            pass

    def reusable(self, student: str, key: str) -> bool:
        old = self.students.get(student)
        return (isinstance(old, dict) and old.get("key") == key and old.get("status") in SCORED
                and (self.reports / f"{student}.json").is_file())

    def forget(self, keep: set[str]) -> None:
        """Drop students no longer in SRC, and their files."""
        for student in [s for s in self.students if s not in keep]:
            del self.students[student]
            self._remove(student)

    def _remove(self, student: str, graded_copy: bool = True) -> None:
        for path in (self.reports / f"{student}.json", self.reports / f"{student}.txt"):
            path.unlink(missing_ok=True)
        if graded_copy:
            for suffix in (".py", ".ipynb"):
                (self.graded / f"{student}{suffix}").unlink(missing_ok=True)

    def mark_pending(self, sub: Submission, key: str) -> None:
        """A submission about to be graded: results for other content go now."""
        old = self.students.get(sub.student, {})
        if old.get("key") != key or old.get("status") not in SCORED:
            self._remove(sub.student, graded_copy=False)
            self.students[sub.student] = self._entry(sub, key, PENDING, "not graded yet", 0.0)

    def record_report(self, sub: Submission, key: str, outcome: _Outcome) -> dict:
        report = replace(outcome.report, submission=sub.source)
        _write_atomic(self.reports / f"{sub.student}.json", to_json(report))
        _write_atomic(self.reports / f"{sub.student}.txt", to_text(report))
        entry = self._entry(sub, key, _row_status(report), clean_line(report.import_error)[:500],
                            outcome.seconds)
        entry.update(scores={q.id: q.score for q in report.questions}, total=report.total,
                     max_total=report.max_total, isolation=report.isolation,
                     mistakes={q.id: [clean_line(m)[:300] for m in q.mistakes]
                               for q in report.questions if q.mistakes})
        self.students[sub.student] = entry
        return entry

    def record_error(self, sub: Submission, key: str, outcome: _Outcome) -> dict:
        self._remove(sub.student, graded_copy=False)
        _write_atomic(self.reports / f"{sub.student}.txt",
                      f"Grading {clean_line(sub.source)}\n\nYour submission could not be graded automatically "
                      "because of a problem on the grader's side, not in your code.\n"
                      "Your instructor has been told and will grade it.\n")
        entry = self._entry(sub, key, UNGRADABLE, outcome.error, outcome.seconds)
        self.students[sub.student] = entry
        return entry

    def record_skip(self, sub: Submission) -> dict:
        self._remove(sub.student)
        _write_atomic(self.reports / f"{sub.student}.txt",
                      f"Submission {clean_line(sub.source)}\n\nNot graded: {clean_line(sub.reason)}.\n"
                      f"The grader looks for {self.rubric.submission_name} (or a .ipynb notebook).\n")
        entry = self._entry(sub, "", sub.status, sub.reason, 0.0)
        self.students[sub.student] = entry
        return entry

    def _entry(self, sub: Submission, key: str, status: str, reason: str, seconds: float) -> dict:
        entry = {"source": sub.source, "status": status, "reason": reason, "key": key,
                 "seconds": round(seconds, 3), "info": sub.info}
        if key:
            entry["graded_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return entry

    def save(self) -> None:
        """state.json, then gradebook.csv: each replaced whole, never half-written."""
        state = {"version": 1, "context": self.context, "students": self.students}
        _write_atomic(self.out / "state.json", json.dumps(state, indent=1, sort_keys=True))
        _write_atomic(self.out / "gradebook.csv",
                      summary.gradebook_csv([i.id for i in self.rubric.items], self.students))
        if self.lms == "canvas":
            _write_atomic(self.out / "canvas_import.csv",
                          summary.canvas_csv(self.rubric, self.students))


# ------------------------------------------------------------- progress

class _Progress:
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
        status = entry["status"]
        self.counts[status] = self.counts.get(status, 0) + 1
        if self.tty:
            self.draw(force=True)
            return
        score = (f"{entry['total']:.4g}/{entry['max_total']:g}" if status in SCORED
                 else clean_line(entry.get("reason", ""))[:120])
        if status == IMPORT_ERROR:
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


# ------------------------------------------------------------- the batch

def _cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:  # a cgroup CPU quota ("max 100000" when there is none)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _default_jobs() -> tuple[int, str]:
    cores = _cores()
    try:
        with open("/proc/meminfo") as f:
            meminfo = dict(line.split(":", 1) for line in f)
        available = int(meminfo["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return cores, f"{cores} cores"
    by_memory = max(1, available // MEMORY_PER_WORKER)
    if by_memory < cores:
        return int(by_memory), f"{cores} cores, but memory for {by_memory}"
    return cores, f"{cores} cores"


class _Interrupt:
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


def _open_source(src: Path, scratch: Path) -> tuple[Path, list[dict]]:
    if src.is_dir():
        return src.resolve(), []
    if src.is_file() and zipfile.is_zipfile(src):
        root = scratch / "src"
        root.mkdir()
        return root, _extract_zip(src, root)
    raise UsageError(f"{src}: not a folder or a .zip file")


def _lock(out: Path):
    """Lock DIR itself for this batch: nothing to clean up, released when the process ends."""
    (out / ".batch.lock").unlink(missing_ok=True)   # left by older versions
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"{out}: another batch is writing there now") from None
    return fd


def run_batch(args) -> int:
    from .cli import default_checks

    rubric = load_rubric(args.rubric)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if getattr(args, "ray", None) is not None:
        from . import ray_batch
        ray_batch.check_address(args.ray)
        if args.retries < 0:
            raise UsageError("--retries must be at least 0")
    jobs, why_jobs = (args.jobs, "--jobs") if args.jobs else _default_jobs()
    visibilities = ("public", "hidden") if default_checks() == "all" else ("public",)
    out = args.out.resolve()
    if args.src.resolve() == out:
        raise UsageError("--out must not be SRC itself")
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        with tempfile.TemporaryDirectory(prefix="grader-batch-") as scratch:
            root, left_out = _open_source(args.src, Path(scratch))
            found = discover(root, rubric, exclude=out)
            found.ignored[:0] = left_out
            return _run(args, rubric, visibilities, jobs, why_jobs, out, found)
    finally:
        os.close(lock)


def _run(args, rubric: Rubric, visibilities, jobs: int, why_jobs: str, out: Path,
         found: Discovery) -> int:
    started = time.monotonic()
    context = _context_digest(rubric, visibilities, args.isolation)
    output = _Output(out, rubric, context, getattr(args, "lms", None))
    output.forget({s.student for s in found.submissions})
    todo: list[tuple[Submission, str, Path]] = []
    reused = 0
    for sub in found.submissions:
        if sub.status:
            output.record_skip(sub)
            continue
        graded, suffix = _graded_file(sub)
        if len(graded) > MAX_GRADED_BYTES:
            output.record_skip(replace(sub, status="skipped-too-large",
                                       reason=f"more than {MAX_GRADED_BYTES // 2**20} MiB of Python"))
            continue
        key = hashlib.sha256(hashlib.sha256(graded).digest() + context.encode()).hexdigest()
        copy = output.graded / f"{sub.student}{suffix}"
        (output.graded / f"{sub.student}{'.py' if suffix == '.ipynb' else '.ipynb'}").unlink(
            missing_ok=True)
        if not args.force and output.reusable(sub.student, key) and copy.is_file():
            reused += 1
            continue
        if not copy.is_file() or copy.read_bytes() != graded:
            _write_atomic(copy, graded)
        output.mark_pending(sub, key)
        todo.append((sub, key, copy))
    output.save()  # skips, and pending rows for what changed, before anything slow
    skipped = [(name, s) for name, s in sorted(output.students.items())
               if s["status"].startswith("skipped")]
    print(f"batch: {len(found.submissions)} students ({found.layout} layout): {len(todo)} to grade, "
          f"{reused} unchanged since graded, {len(skipped)} skipped"
          + (f", {len(found.ignored)} files ignored" if found.ignored else ""), file=sys.stderr)
    _list("skipped", [f"{name} ({s['source']}): {s['reason']}" for name, s in skipped])
    _list("ignored", [f"{i['path']}: {i['reason']}" for i in found.ignored])
    if output.lms == "canvas":
        left = sorted(n for n, s in output.students.items() if not s.get("info", {}).get(
            "canvas_user_id"))
        _list("not in canvas_import.csv (no Canvas user id)", left)
    interrupted = False
    elapsed_grading = 0.0
    cluster = None
    if todo and getattr(args, "ray", None) is not None:
        from . import ray_batch   # joins or starts Ray first: a bad address fails in seconds
        cluster = ray_batch.connect(args.ray, jobs if args.ray == ray_batch.LOCAL else None)
    try:
        if todo:
            interrupted, elapsed_grading, jobs = _grade_todo(args, rubric, visibilities, jobs,
                                                             why_jobs, output, todo, cluster)
    finally:
        if cluster is not None:
            cluster.close()
    output.save()
    report = summary.build(rubric, output.students, layout=found.layout, ignored=found.ignored,
                           source=str(args.src), complete=not interrupted,
                           timing={"seconds": round(time.monotonic() - started, 2),
                                   "grading_seconds": round(elapsed_grading, 2),
                                   "graded_now": len(todo) if not interrupted else None,
                                   "unchanged": reused, "jobs": jobs})
    summary.write_all(out, report, output.students, rubric)
    counts = report["counts"]
    written = ["gradebook.csv"] + (["canvas_import.csv"] if output.lms == "canvas" else [])
    print("batch: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
          + f"; wrote {', '.join(str(out / w) for w in written)} and {out / 'summary.html'}",
          file=sys.stderr)
    if interrupted:
        print("batch: interrupted; the gradebook holds what finished, a rerun goes on from there",
              file=sys.stderr)
        return 130
    return 1 if counts.get(UNGRADABLE) else 0


def _grade_todo(args, rubric: Rubric, visibilities, jobs: int, why_jobs: str, output: _Output,
                todo: list, cluster) -> tuple[bool, float, int]:
    """Grade what changed, locally or on Ray: (interrupted, seconds, grades at once)."""
    level = _prepare(rubric, visibilities, args.isolation)
    if cluster is not None:
        jobs = min(args.jobs or cluster.cpus, len(todo))
        print(f"batch: on {cluster.description}; {jobs} grade(s) at once, isolation decided "
              f"on each node (here: {level}), {rubric.limits['threads']} TensorFlow "
              "thread(s) each", file=sys.stderr)
    else:
        jobs = min(jobs, len(todo))
        print(f"batch: {jobs} worker{'s' * (jobs > 1)} ({why_jobs}), isolation {level}, "
              f"{rubric.limits['threads']} TensorFlow thread(s) each", file=sys.stderr)
    if cluster is None and visibilities == ("public", "hidden") and level != "full":
        print("WARNING: grading without full isolation (basic): submissions run as this "
              "user. Grade untrusted work as root on Linux.", file=sys.stderr)
    # longest first (as last time), so that no long one is left to run alone at the end
    todo.sort(key=lambda t: -float(output.students.get(t[0].student, {}).get("seconds") or 0))
    output.save()
    grading_started = time.monotonic()
    if cluster is not None:
        from . import ray_batch
        interrupted = ray_batch.grade_all(cluster, todo, output, rubric, visibilities,
                                          args.isolation, jobs, args.retries)
    else:
        interrupted = _grade_all(todo, output, rubric, visibilities, args.isolation, jobs)
    return interrupted, time.monotonic() - grading_started, jobs


def _list(what: str, lines: list[str], limit: int = 20) -> None:
    for line in lines[:limit]:
        print(f"  {what} {clean_line(line)}", file=sys.stderr)
    if len(lines) > limit:
        print(f"  ... and {len(lines) - limit} more {what}: see summary.json", file=sys.stderr)


def _prepare(rubric: Rubric, visibilities, isolation: str) -> str:
    """Checks that concern every submission, before any is graded (exit 2 if one fails).

    It also warms what engine.grade shares between threads: the MNIST loader
    module, the reference's expected values and the zygote, one for the
    whole worker pool (TensorFlow imports there meanwhile).
    """
    engine.prestart(rubric)
    try:
        level, _ = sandbox.detect_isolation(isolation)
    except sandbox.SandboxError as exc:
        raise UngradableError(str(exc)) from None
    tasks = engine.plan(rubric, visibilities)
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        os.chmod(tmp, 0o711)
        engine.expected_outputs(rubric, tasks, Path(tmp))
    return level


def _grade_all(todo, output: _Output, rubric: Rubric, visibilities, isolation: str,
               jobs: int) -> bool:
    """Grade on ``jobs`` threads; returns True when interrupted."""
    waiting: queue.Queue = queue.Queue()
    for item in todo:
        waiting.put(item)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                sub, key, path = waiting.get_nowait()
            except queue.Empty:
                return
            results.put((sub, key, _grade(path, rubric, visibilities, isolation)))

    progress = _Progress(len(todo), jobs)
    threads = [threading.Thread(target=work, name=f"batch-worker-{i}", daemon=True)
               for i in range(jobs)]
    with _Interrupt() as interrupt:
        for t in threads:
            t.start()
        finished = 0
        while finished < len(todo) and not interrupt.event.is_set():
            try:
                sub, key, outcome = results.get(timeout=0.2)
            except queue.Empty:
                progress.draw()
                continue
            if outcome.report is not None:
                entry = output.record_report(sub, key, outcome)
            else:
                entry = output.record_error(sub, key, outcome)
            output.save()
            finished += 1
            progress.finished(sub.student, entry)
        progress.close()
        if not interrupt.event.is_set():
            return False
        stop.set()
        running = sum(t.is_alive() for t in threads)
        if running:
            print(f"batch: interrupted; waiting for the {running} grade(s) running now to stop "
                  "(their results are dropped; Ctrl-C again to quit at once)",
                  file=sys.stderr, flush=True)
        for t in threads:
            t.join()
    return True
