"""Grading results as immutable data, and every way of rendering them.

``Report`` -> ``QuestionResult`` -> ``CheckResult``, all frozen.  This module
is the one place that turns them into text: the terminal table, the JSON of
``../shared/ASSIGNMENT.md`` and Gradescope's ``results.json`` (the gradebook
CSV is batch's).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

PASSED, FAILED, ERROR, PENDING, SKIPPED = "passed", "failed", "error", "pending", "skipped"


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


def _isolation(report: Report) -> str:
    if report.isolation == "full" or not report.confinement:
        return report.isolation
    return f"{report.isolation}, {report.confinement}"


def to_text(report: Report) -> str:
    """The student's view: a table, then details for what lost points, then the total."""
    lines = [f"Grading {report.submission}"]
    if report.checks_run == "public":
        lines.append(f"public checks: {_num(report.max_total)} of {_num(report.full_total)} "
                     "points can be checked here; the rest are checked at grading.")
    width = max(len(q.title) for q in report.questions) if report.questions else 10
    lines.append("")
    for q in report.questions:
        score = f"{_num(q.score)}/{_num(q.max_score)}"
        lines.append(f"  {q.id:<5} {q.title:<{width}}  {score:>7}  {_mark(q.status):<7} {q.feedback}")
    lost = [q for q in report.questions if q.status not in (PASSED,)]
    if lost:
        lines += ["", "Details"]
        for q in lost:
            lines.append(f"  {q.id} {q.title}")
            shown = set()
            for c in q.checks:
                if c.status == PASSED:
                    continue
                if c.status == ERROR:  # one failed call fails every check of the item once
                    if c.message in shown:
                        continue
                    shown.add(c.message)
                    lines.append(f"    [{_mark(c.status)}] {c.message}")
                else:
                    lines.append(f"    [{_mark(c.status)}] {c.name}: {c.message}")
                if c.hint:
                    lines.append(f"        try: {c.hint}")
                if c.traceback:
                    lines += ["        " + t for t in c.traceback.rstrip().splitlines()[-6:]]
    lines += ["", f"Total: {_num(report.total)}/{_num(report.max_total)}"
                  f"    (isolation: {_isolation(report)})"]
    return "\n".join(lines) + "\n"


def to_dict(report: Report) -> dict:
    """The JSON report: the fields of ASSIGNMENT.md, plus details."""
    return {
        "total": report.total,
        "max_total": report.max_total,
        "questions": [{
            "id": q.id, "title": q.title, "score": q.score, "max_score": q.max_score,
            "feedback": q.feedback, "status": q.status, "hidden_points": q.hidden_points,
            "checks": [asdict(c) for c in q.checks],
        } for q in report.questions],
        "checks_run": report.checks_run,
        "full_total": report.full_total,
        "isolation": report.isolation,
        "confinement": report.confinement,
        "submission": report.submission,
        "grader_version": report.grader_version,
        "rubric_digest": report.rubric_digest,
    }


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2) + "\n"


def _question_output(q: QuestionResult) -> str:
    lines = [q.feedback]
    for c in q.checks:
        lines.append(f"[{_mark(c.status)}] {c.name}: {c.message}")
        if c.hint and c.status != PASSED:
            lines.append(f"    try: {c.hint}")
    return "\n".join(lines)


def to_gradescope(report: Report, hidden_visibility: str = "after_published") -> dict:
    """Gradescope's results.json: one test per item, hidden checks as their own tests."""
    tests = []
    for q in report.questions:
        public = tuple(c for c in q.checks if c.visibility == "public")
        hidden = tuple(c for c in q.checks if c.visibility != "public")
        for part, checks, visibility in (("", public, "visible"),
                                         (" (hidden checks)", hidden, hidden_visibility)):
            if not checks:
                continue
            view = QuestionResult(q.id, q.title, sum(c.score for c in checks),
                                  sum(c.points for c in checks), q.status, q.feedback, checks)
            tests.append({"name": f"{q.id} {q.title}{part}", "number": q.id,
                          "score": round(view.score, 4), "max_score": round(view.max_score, 4),
                          "output": _question_output(view), "visibility": visibility})
    return {"score": round(report.total, 4), "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests,
            "output": f"Graded with isolation: {_isolation(report)}"}
