"""Pairs of a class's submissions worth a human look: similar code, and shared wrong behaviour.

Two signals, each in [0, 1], both advice for a human (no score changes):

- **code**: the share of the smaller submission's own code (the starter, the
  loader and the reference removed: :mod:`.fingerprints`) that the other holds
  too, from fingerprints that survive renaming, reformatting and reordering;
- **behaviour**: what the grader saw the code do, where only a copy would
  agree: the same failed check with the same message (public messages show
  values), the same error, the same combination of named mistakes, the same
  wrong values on the grader's inputs.  A right answer is no evidence: only
  failures count, and each is weighted by how few students share it.

Pairs are found through an index from each fingerprint or fact to the students
that have it, so the cost grows with the matches, not with all pairs; a
fingerprint or fact shared by more than :func:`common_cap` students is common
knowledge (an idiom, a popular mistake), not evidence between two of them.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..outcome import RowStatus
from ..report import clean_line
from .fingerprints import fingerprint_files

__all__ = ["DEFAULT_THRESHOLD", "MISSING", "Pair", "available", "common_cap", "compare_class",
           "integrity_csv", "run", "run_command"]

DEFAULT_THRESHOLD = 0.6      # a pair at or over it is flagged for a look
_FLOOR = 40                  # fingerprints: below this much code of its own, a file counts as this
_LISTED = 0.2                # pairs under this score are not written to integrity.csv
_MAX_REPORT_BYTES = 4 * 2**20
# what each kind of shared fact weighs when two students alone share it
MISSING = "copydetect is not installed (pip install -r requirements-similarity.txt)"
_STRENGTH = {"value": 0.45, "message": 0.35, "error": 0.3, "combination": 0.5}
_MAX_MEASUREMENT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Fact:
    """Something the grader saw one submission do that a copy would repeat."""
    kind: str            # a key of _STRENGTH
    key: str             # equal for equal behaviour
    words: str           # the evidence in words, for the instructor


@dataclass
class Pair:
    a: str
    b: str
    code: float = 0.0
    behaviour: float = 0.0
    evidence: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return 1.0 - (1.0 - self.code) * (1.0 - self.behaviour)


def common_cap(n: int) -> int:
    """How many students may share a fingerprint or a fact for it to count as evidence."""
    return max(3, math.ceil(math.sqrt(n)))


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_REPORT_BYTES + 1)
        value = json.loads(data) if len(data) <= _MAX_REPORT_BYTES else None
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def report_facts(report: dict, measured: bool = False) -> list[Fact]:
    """The behaviour a report records that a copy would repeat: its failures, never a pass.
    ``measured``: the values themselves are compared (:func:`measured_facts`), so a failed
    check's message, which shows them, adds nothing."""
    facts: list[Fact] = []
    mistakes: list[tuple[str, str]] = []
    for q in report.get("questions") or []:
        if not isinstance(q, dict):
            continue
        item = clean_line(q.get("id", ""))[:40]
        for c in q.get("checks") or []:
            if not isinstance(c, dict) or c.get("unanswered"):
                continue
            status, name = c.get("status"), clean_line(c.get("name", ""))[:80]
            message = clean_line(c.get("message", ""))[:500]
            if status == "failed" and not c.get("generic"):
                if not measured:
                    facts.append(Fact("message", _digest(item, name, message),
                                      f"the same failed {item} check '{name}': {message[:120]}"))
                named = clean_line(c.get("hint") if c.get("visibility") == "public" else message)
                if named:
                    mistakes.append((item, named[:200]))
            elif status == "error" and c.get("failure") == "error":
                facts.append(Fact("error", _digest(item, name, message),
                                  f"the same error in {item}: {message[:120]}"))
    combination = sorted(set(mistakes))
    if len(combination) >= 2:
        facts.append(Fact("combination", _digest(combination),
                          f"the same {len(combination)} named mistakes ("
                          + ", ".join(i for i, _ in combination) + ")"))
    return facts


def _quantised(array: np.ndarray) -> bytes:
    """An array's values to about four significant digits (floats), as bytes to hash: equal
    for the outputs of one code on one input, whatever the last bits."""
    a = np.asarray(array)
    if a.dtype.kind != "f":
        return a.dtype.str.encode() + repr(a.shape).encode() + a.tobytes()
    mantissa, exponent = np.frexp(np.nan_to_num(a.astype(np.float64), posinf=1e300, neginf=-1e300))
    return repr(a.shape).encode() + np.round(mantissa * 4096).astype(np.int64).tobytes() \
        + exponent.astype(np.int64).tobytes()


def _same_as(got, expected) -> bool:
    """Whether a student's output is the reference's (every array, within a small tolerance)."""
    if set(got.arrays) != set(expected.arrays):
        return False
    for name, ref in expected.arrays.items():
        mine = got.arrays[name]
        if np.shape(mine) != np.shape(ref):
            return False
        try:
            if not np.allclose(mine, ref, rtol=1e-3, atol=1e-4, equal_nan=True):
                return False
        except TypeError:
            if not np.array_equal(mine, ref):
                return False
    return True


def measured_facts(out: Path, students: list[str]) -> dict[str, list[Fact]]:
    """From the measurements batch stored: per item, the values a student's code returned on
    the grader's inputs where they are not the reference's (a right value is no evidence).
    Nothing when the reference's own measurements are not stored beside them."""
    from ..ledger import LedgerError, read_measurements

    try:
        _, reference = read_measurements(out / "measurements" / "reference.results",
                                         _MAX_MEASUREMENT_BYTES)
    except LedgerError:
        return {}
    facts: dict[str, list[Fact]] = {}
    for student in students:
        try:
            _, outputs = read_measurements(out / "measurements" / "students" / f"{student}.results",
                                           _MAX_MEASUREMENT_BYTES)
        except LedgerError:
            continue
        by_item: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for task, (_, got) in sorted(outputs.items()):
            expected = reference.get(task, (None, None))[1]
            if not got.ok or not got.arrays or expected is None or _same_as(got, expected):
                continue
            digest = hashlib.sha256()
            for name in sorted(got.arrays):
                digest.update(name.encode() + b"\0" + _quantised(got.arrays[name]))
            by_item[task.rsplit("-", 1)[0]].append((task, digest.hexdigest()))
        facts[student] = [
            Fact("value", _digest(item, found),
                 f"the same {item} values, not the reference's, on "
                 + (f"all {len(found)} of the grader's inputs" if len(found) > 1
                    else "the grader's input") + " (" + ", ".join(
                     t.rsplit("-", 1)[1] for t, _ in found) + ")")
            for item, found in sorted(by_item.items())]
    return facts


def _pairs_from_index(index: dict, cap: int) -> dict[tuple[int, int], list]:
    """Every pair of students that share a key of ``index`` (key -> sorted student numbers),
    with the keys they share; keys held by more than ``cap`` students are left out."""
    shared: dict[tuple[int, int], list] = defaultdict(list)
    for key, holders in index.items():
        if 2 <= len(holders) <= cap:
            for i, a in enumerate(holders):
                for b in holders[i + 1:]:
                    shared[(a, b)].append(key)
    return shared


def _code_pairs(prints: list[np.ndarray | None], cap: int) -> dict[tuple[int, int], float]:
    """The code score of every pair that shares uncommon fingerprints."""
    owners = [np.full(len(p), i, dtype=np.int64) for i, p in enumerate(prints) if p is not None]
    if not owners:
        return {}
    hashes = np.concatenate([p for p in prints if p is not None])
    owner = np.concatenate(owners)
    order = np.argsort(hashes, kind="stable")
    hashes, owner = hashes[order], owner[order]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    counts = np.diff(np.r_[starts, len(hashes)])
    n = len(prints)
    # each file's own uncommon code: its fingerprints that at most ``cap`` files hold
    sizes = np.bincount(owner[np.repeat(counts <= cap, counts)], minlength=n)
    keep = (counts >= 2) & (counts <= cap)
    pair_ids = []
    for size in np.unique(counts[keep]):
        groups = owner[starts[keep & (counts == size)][:, None] + np.arange(size)]
        a, b = np.triu_indices(size, 1)
        pair_ids.append((groups[:, a] * n + groups[:, b]).ravel())
    if not pair_ids:
        return {}
    ids, shared = np.unique(np.concatenate(pair_ids), return_counts=True)
    result = {}
    for pid, count in zip(ids.tolist(), shared.tolist()):
        a, b = divmod(pid, n)
        result[(a, b)] = min(1.0, count / max(int(min(sizes[a], sizes[b])), _FLOOR))
    return result


def _behaviour_pairs(facts: list[list[Fact]], cap: int
                     ) -> dict[tuple[int, int], tuple[float, list[str]]]:
    index: dict[tuple[str, str], list[int]] = defaultdict(list)
    words: dict[tuple[str, str], str] = {}
    for i, own in enumerate(facts):
        for fact in {(f.kind, f.key): f for f in own}.values():
            index[(fact.kind, fact.key)].append(i)
            words[(fact.kind, fact.key)] = fact.words
    result = {}
    for pair, keys in _pairs_from_index(index, cap).items():
        keep = 1.0
        evidence = []
        for key in sorted(keys, key=lambda k: (len(index[k]), k)):
            others = len(index[key]) - 2
            keep *= 1.0 - _STRENGTH[key[0]] / (others + 1)
            evidence.append(words[key] + (" (no one else in the class)" if others == 0 else
                                          f" ({others} other student{'s' * (others > 1)} too)"))
        result[pair] = (1.0 - keep, evidence)
    return result


def compare_class(out: Path, given: list[Path], workers: int | None = None) -> tuple[list[Pair], dict[str, str]]:
    """The ranked pairs of a batch's DIR ``out`` (its scored students), and the students whose
    code could not be compared, with why.  ``given``: the starter, loader and reference."""
    state = _read_json(out / "state.json") or {}
    students = []
    for name, row in sorted((state.get("students") or {}).items()):
        try:
            if isinstance(row, dict) and RowStatus(row.get("status")).scored:
                students.append(name)
        except ValueError:
            continue
    files = {s: out / "submissions" / f"{s}.py" for s in students}
    not_compared = {s: "no Python was graded (a notebook that could not be read)"
                    for s, p in files.items() if not p.is_file()}
    prints = fingerprint_files({s: p for s, p in files.items() if s not in not_compared},
                               given, workers)
    for s, fp in prints.items():
        if fp is None:
            not_compared[s] = "its file is too large or could not be tokenised"
    cap = common_cap(len(students))
    code = _code_pairs([prints.get(s) for s in students], cap)
    measured = measured_facts(out, students)
    facts = [report_facts(_read_json(out / "reports" / f"{s}.json") or {},
                          measured=bool(measured.get(s)))
             + measured.get(s, []) for s in students]
    behaviour = _behaviour_pairs(facts, cap)
    pairs = []
    for key in sorted(set(code) | set(behaviour)):
        a, b = key
        pair = Pair(students[a], students[b], round(code.get(key, 0.0), 3))
        if key in code:
            pair.evidence.append(f"code: {pair.code:.0%} of the smaller file's own code "
                                 "(starter and reference removed) is in both")
        if key in behaviour:
            score, evidence = behaviour[key]
            pair.behaviour = round(score, 3)
            pair.evidence += evidence
        pairs.append(pair)
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return pairs, not_compared


def integrity_csv(pairs: list[Pair]) -> str:
    """``student_a,student_b,score,code_score,behaviour_score,evidence``, highest first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student_a", "student_b", "score", "code_score", "behaviour_score",
                     "evidence"])
    for p in pairs:
        if p.score >= _LISTED:
            evidence = "; ".join(p.evidence)
            writer.writerow([p.a, p.b, f"{p.score:.3f}", f"{p.code:.3f}", f"{p.behaviour:.3f}",
                             ("'" + evidence) if evidence.startswith(("=", "+", "-", "@")) else evidence])
    return buffer.getvalue()




def given_code() -> list[Path]:
    """The code every student was given or may match without copying: the starter, the
    loader, the reference (absent from a student bundle)."""
    from .. import config
    cfg = config.CONFIG
    return [cfg.project_root / "starter" / "tensorflow_tutorial.py", cfg.loader, cfg.reference]


def _flags(out: Path, students: list[str]) -> dict[str, list[str]]:
    flags = {}
    for s in students:
        found = (_read_json(out / "reports" / f"{s}.json") or {}).get("flags") or []
        words = [clean_line(f.get("why", f) if isinstance(f, dict) else f)[:200]
                 for f in found[:20] if isinstance(f, (str, dict))]
        if words:
            flags[s] = words
    return flags


def run(out: Path, threshold: float = DEFAULT_THRESHOLD, workers: int | None = None
        ) -> tuple[list[Pair], str]:
    """Compare a batch's DIR: write ``integrity.csv`` and the Similarity section that
    summary.html shows (``summary.SIMILARITY_SECTION``).  Returns the pairs and the section."""
    from ..files import write_atomic
    from ..summary import SIMILARITY_SECTION
    from .similarity_page import html_section

    given = given_code()
    pairs, not_compared = compare_class(out, given, workers=workers)
    write_atomic(out / "integrity.csv", integrity_csv(pairs))
    students = sorted((_read_json(out / "state.json") or {}).get("students") or {})
    section = html_section(out, pairs, threshold, not_compared, _flags(out, students), given)
    write_atomic(out / SIMILARITY_SECTION, section)
    return pairs, section


def forget(out: Path) -> None:
    """No comparison this time: the files of an earlier one go, so that none is shown stale."""
    from ..summary import SIMILARITY_SECTION
    for name in ("integrity.csv", SIMILARITY_SECTION):
        (out / name).unlink(missing_ok=True)


def _splice(out: Path, section: str) -> None:
    """summary.html with the new section between its markers (the command, after a batch
    wrote the page)."""
    from ..files import write_atomic
    from ..summary import SIMILARITY_BEGIN, SIMILARITY_END

    page = out / "summary.html"
    try:
        with open(page, "rb") as f:
            text = f.read(_MAX_REPORT_BYTES * 16 + 1).decode("utf-8", errors="replace")
    except OSError:
        return
    if SIMILARITY_BEGIN in text and SIMILARITY_END in text.split(SIMILARITY_BEGIN, 1)[1]:
        head, rest = text.split(SIMILARITY_BEGIN, 1)
        write_atomic(page, head + SIMILARITY_BEGIN + section + SIMILARITY_END
                     + rest.split(SIMILARITY_END, 1)[1])


def available() -> bool:
    """Whether the code signal's tokenizer (copydetect) is installed."""
    return importlib.util.find_spec("copydetect") is not None


def run_command(out: Path, threshold: float | None) -> int:
    """``python -m grader similarity DIR``: 0 done, 2 when DIR is not a batch's folder."""
    from ..errors import UsageError

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    if not 0 <= threshold <= 1:
        raise UsageError(f"--threshold must be between 0 and 1, not {threshold:g}")
    if not (out / "state.json").is_file():
        raise UsageError(f"{out}: not a folder batch wrote (no state.json)")
    if not available():
        raise UsageError(MISSING)
    pairs, section = run(out, threshold)
    _splice(out, section)
    flagged = [p for p in pairs if p.score >= threshold]
    for p in flagged:
        print(f"{p.score:.2f}  {p.a}  {p.b}  (code {p.code:.2f}, behaviour {p.behaviour:.2f})")
    print(f"similarity: {len(flagged)} pair(s) at or over {threshold:g} of {len(pairs)} compared; "
          f"wrote {out / 'integrity.csv'}", file=sys.stderr)
    return 0
