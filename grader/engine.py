"""Grade one submission: plan the probes, run them sandboxed, score the checks.

The parent process never imports the submission or TensorFlow.  The steps
live in their own modules; this one runs them in order:

* ``config``: where everything is (one frozen object, ``config.CONFIG``);
* ``plan``: one task per item and visibility, inputs from the probe's declaration;
* ``child`` and ``supervise``: the sandboxed children and their clocks;
* ``cache``: the reference's outputs on the same inputs;
* ``scoring``: the checks, and the report.

The names other modules use are re-exported here.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from . import config, integrity, sandbox, zygote
from .bounded import InputError, read_capped
from .cache import expected_outputs, read_result_file, save_outputs
from .child import UNREADABLE, _warm, _zygote_env, hidden_paths, output_from_result, prestart
from .data import grading_data, load_loader
from .errors import UngradableError, UsageError
from .outcome import ProbeOutput
from .plan import Task, child_seed, plan, planned_seed
from .progress import Progress, Watch
from .report import ERROR, QuestionResult, Report
from .reuse import MAX_SOURCE, ModelReuse
from .rubric import Item, Rubric
from .scoring import build_report, score_item, shown_question
from .submission_file import graded_source
from .supervise import Probed, probe, run_probes
from .timings import grade_timings, measured

__all__ = ["CACHE_DIR", "EXPECTED_DIR", "GRADER_VERSION", "LOADER_PATH", "PACKAGE_DIR",
           "PROJECT_ROOT", "Probed", "REFERENCE_PATH", "Task", "UNREADABLE", "_zygote_env",
           "child_seed", "expected_outputs", "grade", "grading_data", "hidden_paths",
           "load_loader", "output_from_result", "plan", "planned_seed", "prestart", "probe",
           "read_result_file", "run_probes", "save_outputs", "score_item"]

# The configuration's paths under their old names (read-only aliases of config.CONFIG).
GRADER_VERSION = config.CONFIG.version
PROJECT_ROOT = config.CONFIG.project_root
PACKAGE_DIR = config.CONFIG.package_dir
REFERENCE_PATH = config.CONFIG.reference
LOADER_PATH = config.CONFIG.loader
EXPECTED_DIR = config.CONFIG.expected_dir
CACHE_DIR = config.CONFIG.cache_dir


def _as_script(submission: Path, folder: Path, rubric: Rubric) -> tuple[Path, str, str]:
    """A notebook's code cells as a script beside nothing else: (path, problem, source).

    ``source`` is the text of a script extracted from a notebook (also one that
    batch extracted before), whose lines ``notebook.relocate`` maps back to cells;
    "" for a plain ``.py``.
    """
    return graded_source(submission, folder, rubric.submission_name)


class _Live(Watch):
    """Scores each item as soon as all its tasks are in, for ``progress``."""

    def __init__(self, progress: Progress, tasks: list[Task], expected: dict,
                 shown: Callable[[Item, list[Task], dict, dict], QuestionResult]) -> None:
        self._progress, self._tasks, self._expected, self._shown = progress, tasks, expected, shown
        self._by_id = {t.id: t for t in tasks}
        self._got: dict = {}
        self._lock = threading.Lock()

    def phase(self, name: str, budget: float) -> None:
        task = self._by_id.get(name)
        self._progress.started(task.item.id if task else name, budget)

    def result(self, task_id: str, output) -> None:
        task = self._by_id.get(task_id)
        with self._lock:
            if task is None or task_id in self._got:
                return
            self._got[task_id] = output
            own = [t for t in self._tasks if t.item is task.item]
            if not all(t.id in self._got for t in own):
                return
            got = {t.id: self._got[t.id] for t in own}
        try:
            question = self._shown(task.item, own, got, self._expected)
        except Exception:  # a grader fault: the final scoring raises it again, as one
            return
        self._progress.scored(question, all(out.during_import for out in got.values()))


def _reusable(reuse: ModelReuse | None, source: Path, tasks: list[Task]
              ) -> tuple[dict[str, str], dict]:
    """({task id: reuse key}, {task id: reused output}) for this grade."""
    if reuse is None:
        return {}, {}
    try:
        text = read_capped(source, MAX_SOURCE)
    except (InputError, OSError):
        return {}, {}
    keys = reuse.keys(text.decode("utf-8", "replace"), tasks)
    return keys, reuse.lookup(keys)


def grade(submission: Path, rubric: Rubric, visibilities: tuple[str, ...] = ("public", "hidden"),
          isolation: str = "auto", prepared: tuple[list[Task], dict] | None = None,
          startup: str | None = None, progress: Progress | None = None,
          keep: dict | None = None, reuse: ModelReuse | None = None) -> Report:
    """Grade one file; raises GraderError (exit 2) for anything that is not the student's.

    ``prepared``: the plan of ``rubric`` for ``visibilities`` and the reference's
    outputs on it, computed elsewhere (a Ray driver hands them to the node that
    grades, which then reads no grading data and runs no reference). By
    default both are computed, or read from the cache, here.

    ``startup`` (default: ``$GRADER_STARTUP``, else ``auto``) says how the
    sandboxed children start; see :func:`probe`. The report says which was used.

    ``progress`` hears of each stage and item as it starts, and of each item
    once it is scored (as the report will show it).
    ``keep``: a dict that receives the measurements the report is scored from
    (the plan, each task's output, the reference's, and the facts of the run).
    ``reuse``: the ``model`` results of earlier grades of this file, kept in memory by
    ``watch`` and a kernel's ``check`` (see grader/reuse.py); reused while the code the
    item runs is unchanged.
    """
    if not submission.is_file():
        raise UsageError(f"{submission}: no such file")
    with grade_timings(submission.name):  # measured only with $GRADER_TIMINGS (the benchmark)
        return _grade(submission, rubric, visibilities, isolation, prepared, startup, progress,
                      keep, reuse)


def _grade(submission: Path, rubric: Rubric, visibilities: tuple[str, ...], isolation: str,
           prepared: tuple[list[Task], dict] | None, startup: str | None,
           progress: Progress | None, keep: dict | None,
           reuse: ModelReuse | None = None) -> Report:
    startup = startup or zygote.requested_mode()
    _warm(rubric, startup)  # TensorFlow imports while the inputs are prepared
    with measured("plan"):
        tasks, expected = prepared if prepared is not None else (plan(rubric, visibilities), None)
    if prepared is not None and not {id(t.item) for t in tasks} <= {id(i) for i in rubric.items}:
        # scoring matches a task to its item by identity: they must travel together
        raise UngradableError("the prepared plan is not made of this rubric's items")
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        workroot = Path(tmp)
        os.chmod(workroot, 0o711)
        if expected is None:
            with measured("expected", children=True):
                expected = expected_outputs(rubric, tasks, workroot)
        with measured("source"):
            source, problem, extracted = _as_script(submission.resolve(), workroot / "notebook",
                                                    rubric)
            scanning = (lambda: []) if problem else integrity.start_scan(source)  # never a score

        def shown(item: Item, own: list[Task], got: dict, expected: dict) -> QuestionResult:
            return shown_question(item, own, got, expected, rubric, extracted, submission.name)

        if problem:  # a broken notebook is the student's, like a syntax error
            got = {t.id: ProbeOutput.failure(ERROR, problem) for t in tasks}
            level, confinement = sandbox.detect_isolation(isolation)[0], ""
            started = ""
        else:
            live = None if progress is None else _Live(progress, tasks, expected, shown)
            keys, reused = _reusable(reuse, source, tasks)
            probed = probe(source, tasks, rubric, isolation, workroot, seed_of=planned_seed,
                           startup=startup, watch=live, reused=reused)
            got, level, confinement, started = (probed.results, probed.level,
                                                probed.confinement, probed.startup)
            if reuse is not None:
                reuse.store(keys, got)
    flags = tuple(scanning() + integrity.behaviour_flags(got))
    if keep is not None:   # what batch stores, to rescore without running anything
        keep.update(tasks=tasks, got=got, expected=expected, problem=problem,
                    extracted=bool(extracted), isolation=level, confinement=confinement,
                    startup=started, flags=[[str(f.kind), f.detail] for f in flags])
    with measured("scoring"):
        return build_report(rubric, tasks, got, expected, visibilities=visibilities,
                            submission=str(submission), problem=problem, extracted=extracted,
                            isolation=level, confinement=confinement, startup=started,
                            version=GRADER_VERSION, flags=flags, student_name=submission.name)
