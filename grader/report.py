"""Grading results as immutable data, and every way of rendering them.

``Report`` -> ``QuestionResult`` -> ``CheckResult``, all frozen.  This module
is the one place that turns them into text: the terminal table, the JSON of
``docs/assignment.md`` and Gradescope's ``results.json`` (the gradebook CSV
and the class summary are summary.py's, with ``clean`` from here).

Much of what a report carries is the student's: exception messages, printed
output, file names, notebook text.  ``clean`` is the one function that makes
such text safe to show: it drops every character that shows as nothing
(controls, format characters, separators, tags), and
``clean_block`` marks every line after the first so that a student's text
can never pass for one of the report's own lines ("Total: 100/100").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields

from .outcome import Flag, ItemStatus

PASSED, FAILED, ERROR, PENDING = ItemStatus.PASSED, ItemStatus.FAILED, ItemStatus.ERROR, ItemStatus.PENDING

# Everything a screen shows as nothing (or that reorders what it shows) but a tool
# still reads: the Unicode categories Cc (controls), Cf (format: zero-width
# characters, the BOM, soft hyphen, bidirectional marks, interlinear
# annotations, tag characters), Cs (lone surrogates), Zl and Zp (line and
# paragraph separators), but tab and newline; and the other default-ignorable
# code points (U+034F, the Hangul fillers, variation selectors, U+E0000-E0FFF
# whole).  Precomputed from ``unicodedata``; test_bounded.py checks it still
# covers what the running Python's ``unicodedata.category`` says.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891"
    "\u08e2\u115f-\u1160\u17b4-\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u2064"
    "\u2066-\u206f\u3164\ud800-\udfff\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U000110bd"
    "\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]")
_NEWLINES = re.compile("\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
HIDDEN_FAILED = "a hidden check failed on inputs you have not seen"   # what names no mistake
CONTINUATION = "| "   # what starts every line of a student's text after its first


def clean(text: object) -> str:
    """``text`` without invisible characters (:data:`_CONTROL`) but newline and tab: line
    breaks of any kind become ``\\n``; escape sequences lose their ESC, so they show as
    plain text.  The one function every output format cleans a student's text with."""
    return _CONTROL.sub("", _NEWLINES.sub("\n", str(text)))


def clean_line(text: object) -> str:
    """``clean`` on one line: line breaks become spaces (CSV cells, progress lines)."""
    return " ".join(clean(text).replace("\t", " ").split("\n"))


def clean_block(text: object, indent: str = "") -> str:
    """``clean`` text whose second and later lines start with ``indent`` + ``| ``,
    so that no line of it looks like a line of the report."""
    lines = clean(text).split("\n")
    return "\n".join([lines[0]] + [f"{indent}{CONTINUATION}{line}" for line in lines[1:]])


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    status: str           # passed | failed | error | pending
    points: float         # what this check is worth
    score: float
    visibility: str
    message: str          # one line; may show values (public checks)
    hint: str = ""        # what to try; never shows expected values
    traceback: str = ""
    failure: str = ""     # for an error: how the code failed (error | timeout | crashed)
    unanswered: bool = False  # the code is still the starter's, or the answer is empty
    generic: bool = False     # a failed hidden check whose message names no mistake

    @property
    def mistake(self) -> str:
        """What a failed check names as the mistake: a public check's hint (its diagnosis),
        a hidden check's message (a diagnosis or the rubric's hint, never values)."""
        if self.status != FAILED:
            return ""
        named = self.hint if self.visibility == "public" else self.message
        return "" if self.generic else named


@dataclass(frozen=True)
class QuestionResult:
    id: str
    title: str
    score: float
    max_score: float
    status: str
    feedback: str
    checks: tuple[CheckResult, ...]
    hidden_points: float = 0.0   # points left to hidden checks not run here
    expects: str = ""            # what the question asks for (rubric.yaml), for unanswered ones

    @property
    def unanswered(self) -> bool:
        """Still the starter: every check stopped at its NotImplementedError, or found an
        empty free-text answer."""
        return bool(self.checks) and all(c.unanswered for c in self.checks)

    @property
    def mistakes(self) -> tuple[str, ...]:
        """The named mistakes of the failed checks, each once, in check order."""
        return tuple(dict.fromkeys(c.mistake for c in self.checks if c.mistake))


@dataclass(frozen=True)
class Report:
    submission: str
    total: float
    max_total: float
    questions: tuple[QuestionResult, ...]
    isolation: str
    checks_run: str              # "all" or "public"
    full_total: float            # the rubric's total, hidden checks included
    grader_version: str
    rubric_digest: str
    confinement: str = ""        # what basic isolation adds (Landlock), when it ran
    import_error: str = ""       # importing the file failed: every item lost, for this reason
    notes: tuple[str, ...] = field(default_factory=tuple)   # e.g. notebook lines not run
    startup: str = ""            # how the grading processes started: "zygote" or "fresh"
    flags: tuple[Flag, ...] = ()  # integrity flags for a human to review (never a score)
    only: tuple[str, ...] = ()   # the items graded, when not all of the rubric's (--only)

    @property
    def full_marks(self) -> bool:
        return all(q.status in (PASSED, PENDING) for q in self.questions)

    @property
    def exit_code(self) -> int:
        return 0 if self.full_marks else 1


def _num(x: float) -> str:
    return f"{x:g}" if x == int(x) else f"{x:.1f}"


def _mark(status: str) -> str:
    return {PASSED: "ok", FAILED: "FAIL", ERROR: "ERROR", PENDING: "pending"}.get(status, status)


def _row_mark(q: QuestionResult) -> str:
    return "todo" if q.unanswered else _mark(q.status)


def _isolation(report: Report) -> str:
    level = report.isolation if report.isolation == "full" or not report.confinement \
        else f"{report.isolation}, {report.confinement}"
    return f"{level}; startup: {report.startup}" if report.startup else level


def _feedback(q: QuestionResult, import_failed: bool) -> str:
    """The one line of a question's row: its named mistake, what it expects, or why not."""
    if import_failed:
        return "not graded: your file could not be imported (above)"
    if q.unanswered:
        return f"not answered yet; expects {q.expects}" if q.expects else "not answered yet"
    if q.status == FAILED and q.mistakes:
        return q.mistakes[0]
    return q.feedback


def _text_details(q: QuestionResult) -> list[str]:
    lines = [f"  {q.id} {clean_line(q.title)}: {_num(q.score)}/{_num(q.max_score)} "
             f"{_mark(q.status)}"]
    for mistake in q.mistakes:
        lines.append(f"    mistake: {clean_block(mistake, '             ')}")
    shown = set()
    for c in q.checks:
        if c.status == ERROR:  # one failed call fails every check of the item once
            if c.message in shown:
                continue
            shown.add(c.message)
            lines.append(f"    [{_mark(c.status)}] {clean_block(c.message, '        ')}")
        elif c.status == PASSED:
            lines.append(f"    [ok] {clean_line(c.name)}")
        else:
            lines.append(f"    [{_mark(c.status)}] {clean_line(c.name)}: "
                         f"{clean_block(c.message, '        ')}")
        if c.hint and c.status != PASSED and c.hint not in q.mistakes:
            lines.append(f"        try: {clean_block(c.hint, '             ')}")
        if c.traceback:
            lines += [f"        {CONTINUATION}{clean_line(t)}"
                      for t in c.traceback.rstrip().splitlines()[-6:]]
    return lines


def text_header(submission: str, checks_run: str, max_total: float, full_total: float,
                only: tuple[str, ...] = ()) -> list[str]:
    """The first lines of the text report (also shown before any item is graded)."""
    lines = [f"Grading {clean_line(submission)}"]
    if only:
        lines.append(f"graded: {clean_line(', '.join(only))} only")
    if checks_run == "public":
        lines.append(f"public checks: {_num(max_total)} of {_num(full_total)} "
                     "points can be checked here; the rest are checked at grading.")
    return lines


def text_row(q: QuestionResult, width: int, import_failed: bool = False) -> str:
    """A question's row of the text report; ``width``: that of the widest title."""
    score = f"{_num(q.score)}/{_num(q.max_score)}"
    return (f"  {q.id:<5} {clean_line(q.title):<{width}}  {score:>7}  "
            f"{_row_mark(q):<7} {clean_line(_feedback(q, import_failed))}")


def to_text(report: Report, details: bool = True) -> str:
    """The student's view: the score and the named mistake of each question, then the
    checks of every question that lost points, then the total (``details``: and how
    the grade ran: isolation, start-up)."""
    lines = text_header(report.submission, report.checks_run, report.max_total,
                        report.full_total, report.only)
    if report.notes:
        lines += ["", "Not run when graded (the grader calls your functions itself):"]
        lines += [f"  {clean_block(n, '    ')}" for n in report.notes]
    import_failed = bool(report.import_error)
    if import_failed:
        first = next((c for q in report.questions for c in q.checks if c.status == ERROR), None)
        lines += ["", "Your file could not be imported, so no question could be graded:",
                  f"  {clean_block(report.import_error, '  ')}"]
        if first is not None and first.traceback:
            lines += [f"  {CONTINUATION}{clean_line(t)}"
                      for t in first.traceback.rstrip().splitlines()[-6:]]
        if first is not None and first.hint:
            lines.append(f"  try: {clean_line(first.hint)}")
    width = max(len(q.title) for q in report.questions) if report.questions else 10
    lines.append("")
    lines += [text_row(q, width, import_failed) for q in report.questions]
    lost = [q for q in report.questions
            if q.status != PASSED and not q.unanswered and not import_failed]
    if lost:
        lines += ["", "Details"]
        for q in lost:
            lines += _text_details(q)
    if report.flags:  # one line, for the instructor's review: the score does not use it
        lines += ["", "Noted for review (no effect on the score): " + clean_line(
            "; ".join(f"{f.kind}: {f.detail}" for f in report.flags))]
    said = ([f"graded: {', '.join(report.only)} only"] if report.only else []) \
        + ([f"isolation: {_isolation(report)}"] if details else [])
    lines += ["", f"Total: {_num(report.total)}/{_num(report.max_total)}"
                  + (f"    ({clean_line('; '.join(said))})" if said else "")]
    return "\n".join(lines) + "\n"


def _clean_check(c: CheckResult) -> dict:
    # its fields are plain values: a shallow copy (``asdict`` deep-copies each, slowly)
    data = {f.name: getattr(c, f.name) for f in fields(c) if f.name != "generic"}
    for key in ("name", "message", "hint", "traceback"):
        data[key] = clean(data[key])
    return data


def to_dict(report: Report) -> dict:
    """The JSON report: the fields of docs/assignment.md, plus details."""
    return {
        "total": report.total,
        "max_total": report.max_total,
        "questions": [{
            "id": q.id, "title": q.title, "score": q.score, "max_score": q.max_score,
            "feedback": clean_line(_feedback(q, bool(report.import_error))),
            "status": q.status, "hidden_points": q.hidden_points,
            "expects": q.expects, "unanswered": q.unanswered,
            "mistakes": [clean(m) for m in q.mistakes],
            "checks": [_clean_check(c) for c in q.checks],
        } for q in report.questions],
        "checks_run": report.checks_run,
        "full_total": report.full_total,
        "isolation": report.isolation,
        "confinement": report.confinement,
        "startup": report.startup,
        "import_error": clean(report.import_error),
        "notes": [clean(n) for n in report.notes],
        "flags": [{"kind": f.kind, "detail": clean(f.detail)} for f in report.flags],
        "submission": clean(report.submission),
        "grader_version": report.grader_version,
        "rubric_digest": report.rubric_digest,
    } | ({"only": list(report.only)} if report.only else {})


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2) + "\n"


# Gradescope: how the tests of hidden checks are shown (rubric: gradescope_hidden_visibility).
# "withheld" shows their score at once, so that students see their total, and none of
# their feedback; any other value is Gradescope's own visibility for those tests.
WITHHELD = "withheld"


def _test_output(q: QuestionResult, checks: tuple[CheckResult, ...], import_failed: bool) -> str:
    """What one test shows: built from its own checks only, never from the item's others."""
    if import_failed:
        return "Not graded: your file could not be imported (see the top of this page)."
    if q.unanswered:
        return f"Not answered yet; expects {q.expects}" if q.expects else "Not answered yet."
    lines, shown = [], set()
    for c in checks:
        if c.status == ERROR:
            if c.message in shown:
                continue
            shown.add(c.message)
            lines.append(f"[{_mark(c.status)}] {clean_block(c.message, '    ')}")
            lines += [f"    {CONTINUATION}{clean_line(t)}"
                      for t in c.traceback.rstrip().splitlines()[-6:] if t.strip()]
        else:
            lines.append(f"[{_mark(c.status)}] {clean_line(c.name)}"
                         + (f": {clean_block(c.message, '    ')}" if c.status != PASSED else ""))
        if c.hint and c.status != PASSED:
            lines.append(f"    try: {clean_block(c.hint, '         ')}")
    return "\n".join(lines)


def to_gradescope(report: Report, hidden_visibility: str = "after_published",
                  execution_time: float | None = None) -> dict:
    """Gradescope's results.json: per item, a visible test of its public checks and a test
    of its hidden checks, numbered ``<item>.1`` and ``<item>.2`` in rubric order."""
    tests = []
    import_failed = bool(report.import_error)
    withheld_points = withheld_score = 0.0
    for n, q in enumerate(report.questions, start=1):
        public = tuple(c for c in q.checks if c.visibility == "public")
        hidden = tuple(c for c in q.checks if c.visibility != "public")
        for part, (suffix, checks) in enumerate((("", public), (" (hidden checks)", hidden)),
                                                start=1):
            if not checks:
                continue
            score, points = sum(c.score for c in checks), sum(c.points for c in checks)
            if part == 1:
                visibility, output = "visible", _test_output(q, checks, import_failed)
            elif hidden_visibility == WITHHELD:
                visibility = "visible"
                output = "Checked on inputs you have not seen; the feedback is withheld."
                withheld_points += points
                withheld_score += score
            else:
                visibility, output = hidden_visibility, _test_output(q, checks, import_failed)
            tests.append({"name": f"{q.id} {clean_line(q.title)}{suffix}",
                          "number": f"{n}.{part}",
                          "score": round(score, 4), "max_score": round(points, 4),
                          "output": output, "visibility": visibility})
    lines = [f"Graded with isolation: {_isolation(report)}"]
    if report.notes:
        lines += ["Not run when graded (the grader calls your functions itself):"]
        lines += [f"  {clean_block(n, '    ')}" for n in report.notes]
    if import_failed:
        first = next((c for q in report.questions for c in q.checks if c.status == ERROR), None)
        lines += ["Your file could not be imported, so no question could be graded:",
                  f"  {clean_block(report.import_error, '  ')}"]
        if first is not None:
            lines += [f"  {CONTINUATION}{clean_line(t)}"
                      for t in first.traceback.rstrip().splitlines()[-6:] if t.strip()]
    if hidden_visibility == WITHHELD and withheld_points:
        lines.append(f"Hidden checks: {_num(withheld_score)} of {_num(withheld_points)} points; "
                     "their feedback is withheld.")
    elif any(t["visibility"] != "visible" for t in tests):
        when = "the due date" if hidden_visibility == "after_due_date" else \
            "grades are published"
        lines.append(f"Some tests are hidden until {when}; Gradescope shows your total then.")
    results = {"score": round(sum(t["score"] for t in tests), 4), "visibility": "visible",
               "stdout_visibility": "hidden", "tests": tests, "output": "\n".join(lines)}
    if execution_time is not None:
        results["execution_time"] = max(0, int(round(execution_time)))
    return results
