"""What a grade tells as it goes: two small interfaces, no printing.

``Watch`` is what the supervisor of the sandboxed children (``child.py``,
``supervise.py``) tells the engine: a phase started, a task's output is in.
``Progress`` is what the engine tells whoever shows the grade (``live.py``
for ``check``): a stage or an item started, an item was scored.  Both do
nothing by default; their methods may be called from any thread of a grade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: this module imports nothing of the grader's
    from .outcome import ProbeOutput
    from .report import QuestionResult

__all__ = ["STARTUP", "IMPORT", "Progress", "Watch"]

STARTUP = "startup"   # a child starting (TensorFlow importing, or a fork of the zygote)
IMPORT = "import"     # a child importing the submission


class Watch:
    """The children's supervisor's side: phases and outputs as they happen."""

    def phase(self, name: str, budget: float) -> None:
        """``name`` (STARTUP, IMPORT or a task id) starts now and may last ``budget`` s."""

    def result(self, task_id: str, output: ProbeOutput) -> None:
        """The final output of ``task_id``: told once it can no longer change."""


class Progress:
    """The engine's side: what a live view of one grade needs."""

    def started(self, name: str, budget: float) -> None:
        """``name`` (STARTUP, IMPORT or an item id) starts now and may last ``budget`` s."""

    def scored(self, question: QuestionResult, import_failed: bool) -> None:
        """``question`` is scored as the report will show it; ``import_failed``: importing
        the file failed, so the question was not graded."""
