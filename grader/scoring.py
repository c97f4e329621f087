"""Scoring: each item's checks on what its probe returned, and the report.

A result is first validated against what the item's probe declares
(``probes.py``); a check then runs on it.  A check that raises is a grader
bug: the grade is ungradable (exit 2), naming the check, never a student's
zero.
"""

from __future__ import annotations

from .checks import CHECKS, Context
from .errors import UngradableError
from .outcome import ProbeOutput
from .plan import Task
from .probes import PROBES
from .report import (ERROR, FAILED, HIDDEN_FAILED, PASSED, PENDING, CheckResult, QuestionResult,
                     Report)
from .rubric import Item, Rubric


def build_report(rubric: Rubric, tasks: list[Task], got: dict, expected: dict, *,
                 visibilities: tuple[str, ...], submission: str, problem: str = "",
                 extracted: str = "", isolation: str = "", confinement: str = "",
                 startup: str = "", version: str = "", verdicts: dict | None = None,
                 keys: dict[str, str] | None = None, import_error: str | None = None,
                 flags: tuple = (), student_name: str = "") -> Report:
    """The report of one submission from what its probes returned (``got``, by task id):
    every item scored, a notebook's lines mapped back to its cells (``extracted``: the
    script graded), the import error said once.  ``engine.grade`` builds its report here,
    and a rescore builds the same report from stored results.

    ``verdicts`` (with ``keys``, each task's measurement key): the checks' verdicts on
    these outputs, reused where a check, the tolerances and the task are unchanged
    (a change of points or weights needs no check to run again), added to otherwise;
    ``got`` is then read only where a verdict is missing.  ``import_error``: what
    ``_import_error`` said of these outputs before.  ``flags``: the integrity flags, for a
    human (never a score).  ``student_name``: the file's own name, which the messages
    use for the name the child imported it under (``shown.for_student``)."""
    from .notebook import relocate, skipped
    from .shown import scrub
    questions = tuple(shown_question(item, [t for t in tasks if t.item is item], got, expected,
                                     rubric, extracted, student_name, verdicts, keys)
                      for item in rubric.items)
    if import_error is None:
        import_error = _import_error(got, problem)
    notes: tuple[str, ...] = ()
    if extracted:
        import_error = relocate(import_error, extracted, rubric.submission_name)
        notes = tuple(skipped(extracted))
    if student_name:
        import_error = scrub(import_error, student_name, rubric.submission_name)
        notes = tuple(scrub(n, student_name, rubric.submission_name) for n in notes)
    complete = set(visibilities) >= {"public", "hidden"} and rubric.full_total == rubric.max_total
    return Report(submission=submission, total=round(sum(q.score for q in questions), 6),
                  max_total=round(sum(q.max_score for q in questions), 6), questions=questions,
                  isolation=isolation, checks_run="all" if complete else "public",
                  full_total=rubric.full_total, grader_version=version,
                  rubric_digest=rubric.digest[:16], confinement=confinement,
                  import_error=import_error, notes=notes, startup=startup, flags=tuple(flags))


def shown_question(item: Item, tasks: list[Task], got: dict, expected: dict, rubric: Rubric,
                   extracted: str = "", student_name: str = "", verdicts: dict | None = None,
                   keys: dict[str, str] | None = None) -> QuestionResult:
    """One item scored as the report shows it: a notebook's lines as its cells, the
    student's file by its own name."""
    from dataclasses import replace
    from .shown import for_student
    q = replace(score_item(item, tasks, got, expected, rubric, verdicts, keys),
                expects=item.expects)
    if extracted:
        q = _as_cells(q, extracted, rubric.submission_name)
    return for_student(q, student_name, rubric.submission_name) if student_name else q


VALID = ProbeOutput("ok")   # a task's outputs passed their probe's declaration (memoised)


def _validated(declared, task: Task, got, verdicts: dict | None, key: str | None) -> ProbeOutput:
    """The task's outputs as the probe declares them; with a memo (``verdicts``), what the
    validation found before: VALID, or the failure, without reading the outputs."""
    if key is None:
        return declared.validate(got[task.id])
    memo = f"{key}:valid"
    found = verdicts.get(memo)
    if isinstance(found, ProbeOutput):
        return found
    out = declared.validate(got[task.id])
    verdicts[memo] = VALID if out.ok else ProbeOutput.failure(
        out.status, out.message, out.traceback, out.unanswered)
    return out


_VERDICT_KEYS: dict[tuple, str] = {}


def verdict_key(item: Item, spec, task_key: str, rubric: Rubric) -> str:
    """What a check's verdict depends on: the check (but its weight), the tolerances and
    the task's measurement key (the same for every student: computed once per rubric)."""
    import hashlib
    import json
    index = (rubric.digest, item.id, spec.name, spec.kind, spec.visibility, task_key)
    found = _VERDICT_KEYS.get(index)
    if found is None:
        if len(_VERDICT_KEYS) > 4096:
            _VERDICT_KEYS.clear()
        own = {k: v for k, v in spec.spec.items() if k != "weight"}
        found = hashlib.sha256(json.dumps([item.id, own, rubric.tolerances, task_key],
                                          sort_keys=True, default=str).encode()).hexdigest()[:24]
        _VERDICT_KEYS[index] = found
    return found


def score_item(item: Item, tasks: list[Task], got: dict, expected: dict,
               rubric: Rubric, verdicts: dict | None = None,
               keys: dict[str, str] | None = None) -> QuestionResult:
    total_weight = sum(c.weight for c in item.checks)
    by_vis = {t.visibility: t for t in tasks}
    declared = PROBES[item.probe]
    results = []
    for spec in item.checks:
        task = by_vis.get(spec.visibility)
        if task is None:
            continue
        points = item.points * spec.weight / total_weight
        memoised = verdicts is not None and bool(keys) and task.id in keys
        memo = verdict_key(item, spec, keys[task.id], rubric) if memoised else None
        out = _validated(declared, task, got, verdicts, keys[task.id] if memoised else None)
        if not out.ok:
            results.append(CheckResult(spec.name, spec.kind, ERROR, points, 0.0, spec.visibility,
                                       out.message, _error_hint(out), out.traceback,
                                       failure=out.status, unanswered=out.unanswered))
            continue
        verdict = verdicts.get(memo) if memo is not None else None
        if verdict is None:
            if out is VALID:   # validated before: the outputs are needed now
                out = declared.validate(got[task.id])
            verdict = _run_check(item, spec, task, out, expected.get(task.id), rubric)
            if memo is not None:
                verdicts[memo] = verdict
        hidden = spec.visibility == "hidden"
        if verdict.pending:
            status, score = PENDING, 0.0
        else:
            status, score = (PASSED, points) if verdict.passed else (FAILED, 0.0)
        message = verdict.message
        hint = verdict.diagnosis or ""
        generic = False
        if hidden and status == FAILED:
            # hidden checks never show expected values: name the mistake or give the hint
            generic = not (verdict.diagnosis or spec.spec.get("hint"))
            message = verdict.diagnosis or spec.spec.get("hint") or HIDDEN_FAILED
            hint = spec.spec.get("hint", "") if verdict.diagnosis else ""
        results.append(CheckResult(spec.name, spec.kind, status, points, score, spec.visibility,
                                   message, hint, unanswered=verdict.unanswered and not verdict.passed,
                                   generic=generic))
    max_score = sum(r.points for r in results)
    score = sum(r.score for r in results)
    hidden_points = item.points + item.hidden_points - max_score  # checks not run here
    if all(r.status == PASSED for r in results):
        status, feedback = PASSED, "all checks passed"
    elif any(r.status == ERROR for r in results):
        first = next(r for r in results if r.status == ERROR)
        status, feedback = ERROR, first.message
    elif all(r.status in (PASSED, PENDING) for r in results):
        status, feedback = PENDING, next(r for r in results if r.status == PENDING).message
    else:
        first = next(r for r in results if r.status == FAILED)
        status, feedback = FAILED, first.hint or first.message
    return QuestionResult(item.id, item.title, round(score, 6), round(max_score, 6), status,
                          _one_line(feedback), tuple(results), round(hidden_points, 6))


def _run_check(item: Item, spec, task: Task, out: ProbeOutput, expected: ProbeOutput | None,
               rubric: Rubric):
    """The check's verdict; a check that raises, or that compares with a reference
    output that is not there, is the grader's fault (UngradableError), never a score."""
    kind = CHECKS[spec.kind]
    where = f"check {spec.name!r} ({spec.kind}) of {item.id}"
    if kind.reference and (expected is None or not expected.ok):
        raise UngradableError(f"{where}: no reference output for {task.id}")
    ctx = Context(spec=spec.spec, got=out, expected=expected, inputs=task.inputs,
                  params=task.params, tolerances=rubric.tolerances, secret=task.secret,
                  seed=task.seed)
    try:
        return kind.fn(ctx)
    except Exception as exc:  # a grader bug: the data was validated against the probe
        raise UngradableError(f"{where} raised {type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]}") from exc


def _error_hint(out: ProbeOutput) -> str:
    message = out.message
    if out.unanswered:
        return "write your answer where the starter says YOUR CODE HERE"
    if out.status == "timeout":
        return "look for an endless loop, or work done at import time"
    if any(s in message for s in ("Dimensions must be equal", "Incompatible shapes",
                                  "Cannot feed value of shape", "must have the same rank")):
        return ("check the shapes: X flattened to (m, 784), W1 (784, n_hidden), "
                "W2 (n_hidden, 10), the labels Y (m, 10)")
    return ""


def _one_line(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# How the child words a failed import (inside/runner.py): the report shows it once.
def _import_error(got: dict, problem: str) -> str:
    """The reason importing the file failed, when it failed for every item alike."""
    if problem:
        return problem
    outputs = list(got.values())
    if not outputs or not all(o.during_import for o in outputs):
        return ""
    return outputs[0].message


def _as_cells(q: QuestionResult, source: str, name: str) -> QuestionResult:
    """A question's messages and tracebacks with the notebook's cells for script lines."""
    from dataclasses import replace
    from .notebook import line_map, relocate
    mapping = line_map(source)
    checks = tuple(replace(c, message=relocate(c.message, source, name, mapping),
                           traceback=relocate(c.traceback, source, name, mapping))
                   for c in q.checks)
    return replace(q, checks=checks, feedback=relocate(q.feedback, source, name, mapping))

