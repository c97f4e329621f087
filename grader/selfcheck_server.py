"""The grading process behind the notebook's ``check``: one per kernel, kept warm.

``grader/selfcheck.py`` starts it (``python -m grader.selfcheck_server``)
from the kernel at the first ``check`` and talks to it over the two pipes of
its standard input and output, which only the kernel holds: no socket with a
path, so nothing else can reach it. One request per line, one JSON answer
per line:

* the kernel sends ``{"source": extracted script, "question": "Q5" or null,
  "label": what to call the submission}``;
* the server grades that script on the question's public checks, exactly as
  ``python -m grader check --checks public`` would (the same engine, sandbox
  and report), and answers ``{"text": the report, "exit_code": 0|1|2,
  "total", "max_total", "full_total"}``, or ``{"restart": true}`` when the
  rubric or the grader changed on disk since it started (it then exits and
  the kernel starts a new one).

Every grade forks its children from one zygote (``grader/zygote.py``), so
only the first pays for importing TensorFlow. The server exits when its
standard input closes (the kernel ended, even killed) or after
:data:`IDLE_SECONDS` without a request; the zygote goes with it (at exit, and
on its own when its socket closes). The server never runs submission code
itself: its children do, sandboxed, as in ``make grade``.
"""

from __future__ import annotations

import json
import os
import select
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

IDLE_SECONDS = 600.0
MAX_REQUEST = 16 << 20


class _Grader:
    """The rubric, its public plan and the reference's outputs on it, prepared
    once (the zygote importing TensorFlow meanwhile), for every request."""

    def __init__(self, rubric_path: Path) -> None:
        from . import engine
        from .reuse import ModelReuse
        from .rubric import load_rubric

        self.reuse = ModelReuse()  # check() reuses the model's result while its code is the same
        self.rubric = load_rubric(rubric_path)
        engine.prestart(self.rubric)
        self.tasks = engine.plan(self.rubric, ("public",))
        with tempfile.TemporaryDirectory(prefix="grader-selfcheck-") as tmp:
            self.expected = engine.expected_outputs(self.rubric, self.tasks, Path(tmp))

    def answer(self, request: dict) -> dict:
        from . import engine
        from .errors import GraderError, UsageError
        from .report import to_text

        try:
            rubric, tasks = self.rubric, self.tasks
            question = request.get("question")
            if question is not None:
                ids = [i.id for i in rubric.items]
                if question not in ids:
                    raise UsageError(f"check({question!r}): no such question; "
                                     f"try one of {', '.join(ids)}")
                rubric = replace(rubric, items=(rubric.item(question),))
                tasks = [t for t in tasks if t.item.id == question]
            with tempfile.TemporaryDirectory(prefix="grader-selfcheck-") as tmp:
                script = Path(tmp) / rubric.submission_name
                script.write_text(str(request["source"]), encoding="utf-8")
                report = engine.grade(script, rubric, ("public",),
                                      prepared=(tasks, self.expected), reuse=self.reuse)
            report = replace(report, submission=str(request.get("label") or "the notebook"),
                             notes=())
        except GraderError as exc:
            label = "usage error" if isinstance(exc, UsageError) else "ungradable"
            return {"text": f"{label}: {exc}\n", "exit_code": exc.exit_code}
        return {"text": to_text(report), "exit_code": report.exit_code, "total": report.total,
                "max_total": report.max_total, "full_total": report.full_total}


def serve(root: Path, idle: float = IDLE_SECONDS) -> int:
    """Answer requests on stdin until it closes or stays idle ``idle`` seconds."""
    from .watch import grader_state

    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever else prints goes to stderr, never into an answer
    rubric_path = root / "rubric.yaml"
    known = grader_state(rubric_path)
    from .errors import GraderError
    try:
        grader: _Grader | str = _Grader(rubric_path)
    except GraderError as exc:  # said in answer to every request, as check would say it
        grader = f"ungradable: {exc}\n"
    requests = sys.stdin.buffer
    while True:
        if not select.select([requests], [], [], idle)[0]:
            return 0
        line = requests.readline(MAX_REQUEST)
        if not line:
            return 0
        if grader_state(rubric_path) != known:
            answer: dict = {"restart": True}
        else:
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("source"), str):
                    raise ValueError('expected {"source": "...", "question": ...}')
                answer = ({"text": grader, "exit_code": 2} if isinstance(grader, str)
                          else grader.answer(request))
            except (ValueError, KeyError, TypeError) as exc:
                answer = {"text": f"usage error: a malformed request ({exc})\n", "exit_code": 2}
            except Exception as exc:  # a bug of ours: one line, and the server goes on
                answer = {"text": f"ungradable: internal grader error: {type(exc).__name__}: "
                                  f"{exc}\n", "exit_code": 2}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
        if answer.get("restart"):
            return 0


def main() -> int:
    from .config import CONFIG
    try:
        return serve(CONFIG.project_root)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0


if __name__ == "__main__":
    sys.exit(main())
