"""An auto-grader for the "Introduction to TensorFlow" assignment.

The public surface, for code that grades without the command line::

    from grader import grade, load_rubric
    report = grade(Path("tensorflow_tutorial.py"), load_rubric(Path("rubric.yaml")))
    print(report.total, [(q.id, q.score) for q in report.questions])

In a notebook, ``from grader import check`` then ``check("Q5")`` grades the
kernel's current functions on Q5's public checks, in a grading process of
its own (``grader/selfcheck.py``).

``grade`` raises a ``GraderError`` (exit status 2 on the command line) for
anything that is not the student's doing: a rubric that does not validate,
a reference that fails, a sandbox that cannot start. The names are loaded on
first use, so that importing one module of the package (the sandbox, the
protocol) stays light.
"""

from __future__ import annotations

import importlib
import os

# The grader's own numpy works on small arrays while the sandboxed children have the cores:
# BLAS threads of its own only spin against them. A batch's parent spent 0.44 s of CPU per
# submission with one BLAS thread per core (2.1 s of it in 1,476 small products for 18
# submissions), and 0.17 s with one. Set before numpy is imported; a value already set is kept.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

__all__ = ["GraderError", "Report", "check", "grade", "load_rubric"]

_WHERE = {"grade": "engine", "load_rubric": "rubric", "Report": "report", "GraderError": "errors",
          "check": "selfcheck"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
