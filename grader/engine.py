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
from dataclasses import replace
import tempfile
from pathlib import Path

from . import config, integrity, sandbox, zygote
from .cache import expected_outputs, read_result_file, save_outputs
from .child import UNREADABLE, _warm, _zygote_env, hidden_paths, output_from_result, prestart
from .data import grading_data, load_loader
from .errors import UngradableError, UsageError
from .outcome import ProbeOutput
from .plan import Task, child_seed, plan, planned_seed
from .report import ERROR, Report
from .rubric import Rubric
from .scoring import _as_cells, _import_error, score_item
from .supervise import Probed, probe, run_probes

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
    from . import notebook
    if submission.suffix != ".ipynb":
        try:
            head = submission.read_bytes()[:4096].decode("utf-8", "replace")
        except OSError:
            return submission, "", ""
        if not notebook.is_extracted(head):
            return submission, "", ""
        return submission, "", submission.read_text(encoding="utf-8", errors="replace")
    try:
        source = notebook.extract(submission)
    except notebook.NotebookError as exc:
        return submission, f"{submission.name}: {exc}", ""
    folder.mkdir()
    script = folder / rubric.submission_name
    script.write_text(source)
    return script, "", source


def grade(submission: Path, rubric: Rubric, visibilities: tuple[str, ...] = ("public", "hidden"),
          isolation: str = "auto", prepared: tuple[list[Task], dict] | None = None,
          startup: str | None = None) -> Report:
    """Grade one file; raises GraderError (exit 2) for anything that is not the student's.

    ``prepared``: the plan of ``rubric`` for ``visibilities`` and the reference's
    outputs on it, computed elsewhere (a Ray driver hands them to the node that
    grades, which then reads no grading data and runs no reference). By
    default both are computed, or read from the cache, here.

    ``startup`` (default: ``$GRADER_STARTUP``, else ``auto``) says how the
    sandboxed children start; see :func:`probe`. The report says which was used.
    """
    if not submission.is_file():
        raise UsageError(f"{submission}: no such file")
    startup = startup or zygote.requested_mode()
    _warm(rubric, startup)  # TensorFlow imports while the inputs are prepared
    tasks, expected = prepared if prepared is not None else (plan(rubric, visibilities), None)
    if prepared is not None and not {id(t.item) for t in tasks} <= {id(i) for i in rubric.items}:
        # scoring matches a task to its item by identity: they must travel together
        raise UngradableError("the prepared plan is not made of this rubric's items")
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        workroot = Path(tmp)
        os.chmod(workroot, 0o711)
        if expected is None:
            expected = expected_outputs(rubric, tasks, workroot)
        source, problem, extracted = _as_script(submission.resolve(), workroot / "notebook",
                                                rubric)
        scanning = (lambda: []) if problem else integrity.start_scan(source)  # never a score
        if problem:  # a broken notebook is the student's, like a syntax error
            got = {t.id: ProbeOutput.failure(ERROR, problem) for t in tasks}
            level, confinement = sandbox.detect_isolation(isolation)[0], ""
            started = ""
        else:
            probed = probe(source, tasks, rubric, isolation, workroot, seed_of=planned_seed,
                           startup=startup)
            got, level, confinement, started = (probed.results, probed.level,
                                                probed.confinement, probed.startup)
    questions = tuple(score_item(item, [t for t in tasks if t.item is item], got, expected, rubric)
                      for item in rubric.items)
    from .notebook import relocate, skipped
    questions = tuple(replace(q, expects=item.expects) for q, item in zip(questions, rubric.items))
    import_error = _import_error(got, problem)
    notes: tuple[str, ...] = ()
    if extracted:
        questions = tuple(_as_cells(q, extracted, rubric.submission_name) for q in questions)
        import_error = relocate(import_error, extracted, rubric.submission_name)
        notes = tuple(skipped(extracted))
    flags = tuple(scanning() + integrity.behaviour_flags(got))
    complete = set(visibilities) >= {"public", "hidden"} and rubric.full_total == rubric.max_total
    checks_run = "all" if complete else "public"
    return Report(submission=str(submission), total=round(sum(q.score for q in questions), 6),
                  max_total=round(sum(q.max_score for q in questions), 6), questions=questions,
                  isolation=level, checks_run=checks_run, full_total=rubric.full_total,
                  grader_version=GRADER_VERSION, rubric_digest=rubric.digest[:16],
                  confinement=confinement, import_error=import_error, notes=notes,
                  startup=started, flags=flags)
