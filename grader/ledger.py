"""The gradebook's ledger: stored measurements, and the scores composed from them.

A batch keeps, for each student, what its checks were scored on: every task's
output (``ProbeOutput``) with the measurement key it was taken under, and the
facts of the run (the import problem, the isolation).  A score is never
stored as the truth: it is composed from four layers,

* those measurements, scored again by the current rubric (``scoring``);
* the manual layer (``manual.json`` in the batch's folder): scores and
  comments an instructor gave, for pending items or as overrides; grading
  never writes it, only ``--manual`` does;
* the late policy of the rubric, with the extensions file;
* nothing else: the penalty is applied when a row is composed, clamped to
  [0, raw].

A task's **measurement key** covers what a child computes: the grader code the
child runs and the code that plans its inputs, the reference, the MNIST
loader, the limits, the isolation, and the task itself (probe, parameters,
inputs, seed).  When it is unchanged the stored output stands and a rubric
change (points, weights, tolerances, thresholds, visibilities of existing
tasks, manual scores, policy) is a rescore; when it changed, that item needs
a new run (``batch --items``).

Stored files are read back with their sizes bounded; anything malformed is
that student's problem (their row needs a rerun), never the class's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import config, protocol
from .checks_base import Verdict
from .errors import UsageError
from .outcome import ProbeOutput, ProbeStatus
from .plan import Task
from .rubric import LatePolicy, Rubric
from .scoring import VALID

__all__ = ["LedgerError", "MEASURE_NEUTRAL", "Manual", "compose_row", "decode_measurements",
           "encode_measurements", "late_hours", "late_penalty", "manual_items", "parse_extensions",
           "parse_manual", "read_table",
           "measurement_base", "read_measurements", "task_keys", "verdict_keys", "Verdicts"]

# Grader modules that only score, render or drive a batch: a change there is a rescore.
MEASURE_NEUTRAL = frozenset({
    "checks.py", "checks_base.py", "checks_loop.py", "checks_text.py", "checks_training.py",
    "checks_values.py", "diagnoses.py", "scoring.py", "report.py", "rubric.py", "numerics.py",
    "ledger.py", "lms.py", "summary.py", "cli.py", "__main__.py", "distribute.py",
    "defaults.py", "submission_file.py", "batch/"})
_LENGTH = struct.Struct("<I")
FACTS = "facts"                  # the pseudo-task holding the facts of the run
MAX_MESSAGE = 2000
MAX_TRACEBACK = 8000


class LedgerError(Exception):
    """A stored file that cannot be used: the row it belongs to needs a new run."""


# ------------------------------------------------------------------ keys

def _neutral(path: Path) -> bool:
    relative = path.relative_to(config.CONFIG.package_dir).as_posix()
    return relative in MEASURE_NEUTRAL or relative.split("/")[0] + "/" in MEASURE_NEUTRAL


def measurement_base(rubric: Rubric, isolation: str) -> str:
    """What every task's measurement depends on besides the task itself."""
    cfg = config.CONFIG
    h = hashlib.sha256(json.dumps([cfg.version, rubric.limits, isolation],
                                  sort_keys=True).encode())
    files = [p for p in sorted(cfg.package_dir.rglob("*.py"))
             if "__pycache__" not in p.parts and not _neutral(p)]
    files += [cfg.reference, cfg.loader, cfg.project_root / "requirements.txt",
              cfg.project_root / "requirements-nodeps.txt"]
    for path in files:
        h.update(path.name.encode())
        if path.is_file():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


# The code a check's verdict depends on (besides its task's measurements).
CHECK_CODE = ("checks.py", "checks_base.py", "checks_loop.py", "checks_text.py",
              "checks_training.py", "checks_values.py", "diagnoses.py", "numerics.py",
              "scoring.py", "probes.py", "inputs.py")


def verdict_keys(keys: dict[str, str]) -> dict[str, str]:
    """Each task's key for the verdicts of its checks: its measurement key and the code
    of the checks (a verdict is kept while neither changes)."""
    h = hashlib.sha256()
    for name in CHECK_CODE:
        path = config.CONFIG.package_dir / name
        h.update(name.encode())
        if path.is_file():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    code = h.hexdigest()
    return {task: hashlib.sha256(f"{code}:{key}".encode()).hexdigest()[:32]
            for task, key in keys.items()}


def task_keys(base: str, tasks: list[Task]) -> dict[str, str]:
    """Each task's measurement key: ``base`` and what the child is given for it."""
    keys = {}
    for t in tasks:
        h = hashlib.sha256(base.encode())
        h.update(json.dumps([t.id, t.item.probe, t.params, t.seed, t.item.budget_seconds,
                             t.item.data], sort_keys=True, default=str).encode())
        for name in sorted(t.inputs):
            array = np.ascontiguousarray(t.inputs[name])
            h.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            h.update(array.tobytes())
        keys[t.id] = h.hexdigest()[:32]
    return keys


# ------------------------------------------------------------------ the store

def encode_measurements(outputs: dict[str, ProbeOutput], keys: dict[str, str],
                        facts: dict) -> bytes:
    """One student's (or the reference's) measurements: the facts, then one result frame
    per task (``protocol.encode_result``), each behind its length."""
    parts = [protocol.encode_result(FACTS, {"facts": facts})]
    for task_id, out in outputs.items():
        own = {"key": keys.get(task_id, ""), "status": str(out.status),
               "message": out.message[:MAX_MESSAGE], "traceback": out.traceback[:MAX_TRACEBACK],
               "during_import": out.during_import, "unanswered": out.unanswered}
        parts.append(protocol.encode_result(task_id, {
            "ledger": own, "meta": out.meta,
            **{f"value_{k}": v for k, v in out.arrays.items()}}))
    return b"".join(_LENGTH.pack(len(p)) + p for p in parts)


def _output(meta: dict, arrays: dict) -> tuple[str, ProbeOutput]:
    own, inner = meta.get("ledger"), meta.get("meta")
    if not isinstance(own, dict) or not isinstance(inner, dict):
        raise LedgerError("a stored result is malformed")
    text = {k: own.get(k, "") for k in ("key", "status", "message", "traceback")}
    flags = {k: own.get(k, False) for k in ("during_import", "unanswered")}
    if not all(isinstance(v, str) for v in text.values()) or \
            not all(isinstance(v, bool) for v in flags.values()):
        raise LedgerError("a stored result is malformed")
    try:
        status = ProbeStatus(text["status"])
    except ValueError:
        raise LedgerError(f"a stored result has an unknown status {text['status'][:40]!r}") from None
    out = ProbeOutput(status, meta=inner if status is ProbeStatus.OK else {},
                      arrays=arrays if status is ProbeStatus.OK else {},
                      message=text["message"][:MAX_MESSAGE],
                      traceback=text["traceback"][:MAX_TRACEBACK], **flags)
    return text["key"], out


def decode_measurements(data: bytes, max_result: int = protocol.MAX_RESULT_BYTES
                        ) -> tuple[dict, dict[str, tuple[str, ProbeOutput]]]:
    """(facts, {task id: (measurement key, output)}); LedgerError if anything is malformed."""
    view = memoryview(data)
    offset, facts, outputs = 0, None, {}
    while offset < len(view):
        if offset + _LENGTH.size > len(view):
            raise LedgerError("a stored result is truncated")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if length > max_result or offset + length > len(view):
            raise LedgerError("a stored result is truncated or too large")
        try:
            task, meta, arrays = protocol.decode_result(view[offset:offset + length], max_result)
        except protocol.ProtocolError as exc:
            raise LedgerError(f"a stored result is malformed ({exc})") from None
        offset += length
        if facts is None:
            if task != FACTS or not isinstance(meta.get("facts"), dict):
                raise LedgerError("the stored facts are missing")
            facts = meta["facts"]
            continue
        if task in outputs or task == FACTS:
            raise LedgerError(f"task {task[:60]!r} is stored twice")
        outputs[task] = _output(meta, arrays)
    if facts is None:
        raise LedgerError("the stored measurements are empty")
    return facts, outputs


def read_measurements(path: Path, max_bytes: int) -> tuple[dict, dict[str, tuple[str, ProbeOutput]]]:
    """``decode_measurements`` of a file, read with its size bounded (no link followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LedgerError("no stored measurements") from None
    except OSError as exc:
        raise LedgerError(f"the stored measurements cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            raise LedgerError(f"the stored measurements are not a file of at most {max_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise LedgerError(f"the stored measurements are larger than {max_bytes} bytes")
    return decode_measurements(data)


# ------------------------------------------------------------------ kept verdicts

class Verdicts(dict):
    """The checks' verdicts of one row (and what each task's validation found), noting which
    the report used: the others go."""

    def __init__(self, saved=None):
        super().__init__()
        self.used: set[str] = set()
        for key, value in (saved.items() if isinstance(saved, dict) else ()):
            found = _memo_loaded(value)
            if found is not None:
                super().__setitem__(key, found)

    def get(self, key, default=None):
        self.used.add(key)
        return super().get(key, default)

    def __setitem__(self, key, value) -> None:
        self.used.add(key)
        super().__setitem__(key, value)

    def saved(self) -> dict:
        return {k: _memo_saved(v) for k, v in self.items() if k in self.used}


def _memo_saved(value) -> list:
    if value is VALID:
        return ["ok"]
    if isinstance(value, ProbeOutput):
        return ["x", str(value.status), value.message, value.traceback, value.unanswered]
    return ["v", value.passed, value.message, value.diagnosis, value.pending, value.advice,
            value.unanswered]


def _memo_loaded(value):
    """A saved verdict or validation, or None for anything malformed (then recomputed)."""
    if value == ["ok"]:
        return VALID
    if not isinstance(value, list) or not value:
        return None
    if value[0] == "x" and len(value) == 5 and all(isinstance(v, str) for v in value[1:4]) \
            and isinstance(value[4], bool) and value[1] in {str(s) for s in ProbeStatus}:
        return ProbeOutput.failure(value[1], value[2], value[3], value[4])
    if value[0] == "v" and len(value) == 7 and isinstance(value[2], str) and \
            all(isinstance(v, bool) for v in (value[1], *value[4:])) and \
            (value[3] is None or isinstance(value[3], str)):
        return Verdict(*value[1:])
    return None


# ------------------------------------------------------------------ manual scores

@dataclass(frozen=True)
class Manual:
    """One line of the manual layer: a score (None: a comment only) and a comment."""

    points: float | None
    comment: str = ""


def manual_items(rubric: Rubric) -> list[str]:
    """The items an instructor grades by hand (a check with ``mode: manual``)."""
    return [i.id for i in rubric.items if any(c.spec.get("mode") == "manual" for c in i.checks)]


# ------------------------------------------------------------------ the late policy

def _when(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def late_hours(policy: LatePolicy, submitted_at: object, flagged_late: bool,
               extra_hours: float = 0.0) -> float | None:
    """Hours past the due date plus the extension (0 when on time); None when the export
    gives no time: then a submission the export flags late counts as one unit late."""
    when = _when(submitted_at)
    if when is None:
        return policy.unit_hours if flagged_late and not extra_hours else None
    seconds = (when - policy.due).total_seconds() - extra_hours * 3600
    return max(0.0, seconds / 3600)


def late_penalty(policy: LatePolicy | None, raw: float, hours: float | None) -> float:
    """The points lost: ``penalty_percent`` of ``raw`` per unit (day or hour) started after
    the grace period, at most ``max_percent``; always within [0, raw]."""
    if policy is None or not hours or hours * 60 <= policy.grace_minutes or raw <= 0:
        return 0.0
    units = math.ceil(round(hours / policy.unit_hours, 9))
    percent = min(policy.max_percent, policy.penalty_percent * units)
    return min(raw, max(0.0, raw * percent / 100.0))


# ------------------------------------------------------------------ one row

def compose_row(entry: dict, item_ids: list[str], manual: dict[str, Manual],
                policy: LatePolicy | None, extra_hours: float = 0.0) -> dict:
    """A gradebook row from a stored entry's automatic scores (``auto``: item -> score, or
    None while an item is pending), its manual layer and the late policy.

    Returns ``scores`` (item -> the score that counts, None while pending), ``raw``,
    ``penalty``, ``total`` (None while an item is pending), ``pending``, ``overrides``
    (items whose automatic score a manual one replaced), ``review`` (overrides whose
    automatic score changed since the override was given), ``override_base`` (the
    automatic scores the overrides were given over, to keep) and ``hours_late``.
    """
    auto = entry.get("auto") or {}
    base = dict(entry.get("override_base") or {})
    scores: dict[str, float | None] = {}
    pending, overrides, review = [], [], []
    for item in item_ids:
        value = auto.get(item)
        given = manual.get(item)
        if given is not None and given.points is not None:
            if value is not None:
                overrides.append(item)
                if item in base and abs(base[item] - value) > 1e-9:
                    review.append(item)
                base.setdefault(item, value)
            scores[item] = given.points
            continue
        base.pop(item, None)
        if value is None and item in auto:
            pending.append(item)
        scores[item] = value
    raw = round(sum(v for v in scores.values() if v is not None), 6)
    info = entry.get("info") or {}
    hours = late_hours(policy, info.get("submitted_at"), bool(info.get("late")),
                       extra_hours) if policy is not None else None
    penalty = round(late_penalty(policy, raw, hours), 6)
    return {"scores": scores, "raw": raw, "penalty": penalty,
            "total": None if pending else round(raw - penalty, 6), "pending": pending,
            "overrides": overrides, "review": review,
            "override_base": {k: v for k, v in base.items() if k in overrides},
            "hours_late": None if hours is None else round(hours, 2)}


# ------------------------------------------------------------------ the instructor's files

MAX_CSV_BYTES = 8 * 2**20
MAX_COMMENT = 4000


def read_table(path: Path, columns: tuple[str, ...], what: str) -> list[tuple[int, dict]]:
    """The rows of an instructor's CSV file with (at least) ``columns``, each with its line
    number; UsageError, in one line naming the file, for a file that cannot be used."""
    import csv
    import io
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_CSV_BYTES:
        raise UsageError(f"{what} {path}: larger than {MAX_CSV_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path}: not UTF-8 text") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in columns if c not in header]
        if missing:
            raise UsageError(f"{what} {path}: no column {', '.join(missing)} (the header must be "
                             f"{','.join(columns)})")
        reader.fieldnames = header
        return [(n + 2, {k: (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()
                         if k is not None}) for n, row in enumerate(reader)]
    except csv.Error as exc:
        raise UsageError(f"{what} {path}: not a CSV file ({exc})") from None


def parse_manual(rows: list[tuple[int, dict]], where: str, points: dict[str, float],
                 students: dict[str, str]) -> tuple[dict[tuple[str, str], Manual], list[str]]:
    """``{(student, item): Manual}`` from the rows of a ``--manual`` file, and the warnings
    (a student not in the gradebook).  ``students`` maps every name a row may use (the row
    name, an anonymised id) to the row name.  A bad item or score is a UsageError naming
    the line: nothing of the file is taken then."""
    found: dict[tuple[str, str], Manual] = {}
    warnings = []
    for line, row in rows:
        student, item, text = row.get("student", ""), row.get("item", ""), row.get("points", "")
        comment = " ".join(row.get("comment", "").split())[:MAX_COMMENT]
        if not student and not item:
            continue
        if item not in points:
            raise UsageError(f"{where} line {line}: {item[:40]!r} is not an item of the rubric "
                             f"({', '.join(points)})")
        value = None
        if text:
            try:
                value = float(text)
            except ValueError:
                raise UsageError(f"{where} line {line}: points {text[:40]!r} is not a number") \
                    from None
            if not 0 <= value <= points[item] or math.isnan(value):
                raise UsageError(f"{where} line {line}: {value:g} points is outside 0..{points[item]:g} "
                                 f"for {item}")
        if student not in students:
            warnings.append(f"{where} line {line}: no student {student[:80]!r} in the gradebook")
            continue
        if value is None and not comment:
            continue
        found[(students[student], item)] = Manual(value, comment)
    return found, warnings


def parse_extensions(rows: list[tuple[int, dict]], where: str) -> dict[str, float]:
    """``{student: extra hours}`` from the rows of the late policy's extensions file."""
    found = {}
    for line, row in rows:
        student, text = row.get("student", ""), row.get("extra_hours", "")
        if not student:
            continue
        try:
            hours = float(text)
        except ValueError:
            raise UsageError(f"{where} line {line}: extra_hours {text[:40]!r} is not a number") \
                from None
        if not 0 <= hours < 24 * 366:
            raise UsageError(f"{where} line {line}: extra_hours {hours:g} is outside 0..8784")
        found[student] = hours
    return found
