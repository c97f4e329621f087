"""``python -m grader batch SRC --out DIR``: grade a whole class.

SRC is a folder or a ``.zip`` of one (a single folder wrapping everything is
opened).  The layouts recognised, which may be mixed:

``files``       one file per student: ``<student>.py`` or ``<student>.ipynb``;
``folders``     one folder per student, ``<student>/...``, holding the submission;
``gradescope``  a Gradescope export: ``submission_metadata.yml`` beside
                ``submission_<id>/`` folders (student names from the metadata);
``canvas``      a Canvas export: ``<name>[_LATE]_<userid>_<submissionid>_<file>``;
                a ``.zip`` a student uploaded is unpacked (``extract_zip``'s caps)
                and searched like a student's folder.

A Gradescope group submission gives one row per member, graded from the same
file.  The submission time is kept (``info.submitted_at``): Gradescope's
``created_at``; for Canvas, the time of a file flagged ``_LATE_`` (a zip
SRC keeps the times it records).

In a student's folder (or among a Canvas student's files) the submission is
the file named as the rubric's ``submission_name`` (``.py``, else ``.ipynb``),
else the only ``.py`` or ``.ipynb`` file; ``mnist_loader.py`` (provided) is
never taken for one.  Notebooks are graded as their code cells (see
``notebook.py``), as ``check`` grades them; a notebook that cannot be read is
graded too, as the student's error.  (That rule is ``submission_file.py``'s,
shared with the Gradescope autograder.)  Whatever is not graded gets a row saying
why: its status is ``skipped-not-python``, ``skipped-no-submission``,
``skipped-ambiguous``, ``skipped-too-large`` or ``skipped-not-a-file``.
Hidden files, ``__MACOSX/`` and the like are ignored and listed in summary.json.

DIR receives ``gradebook.csv`` (``student,user_id,late,source,<item ids>,total,status,
raw,penalty,hours_late,pending,overrides,review,flags``, one row per student; an item
graded by hand is an empty cell while pending, and so is the total),
``reports/<student>.json`` (what ``check --format json`` prints, with the manual
scores, comments and late penalty merged) and ``reports/<student>.txt`` (the
student's feedback), ``measurements/`` (each student's outputs, the
reference's, see ``ledger.py``: ``rescore`` scores them again), ``manual.json``
(the manual layer: scores and comments ``--manual`` merged), ``review/<item>``
``.html`` and ``.csv`` for items graded by hand, ``feedback.zip``,
``submissions/<student>.py`` (the exact file graded: a notebook's extracted
code), ``summary.json``, ``score_distribution.png``, ``summary.html``,
``state.json`` (what makes a rerun resume) and, with ``--lms canvas``,
``canvas_import.csv`` (Canvas's gradebook import).

A row's name (``<student>``) is unique, and never another student's name:
the name from the export or the file, ``+<user id>`` when the export has one,
and ``+<digest of the source>`` for names that would otherwise collide
(``+`` appears in no name of its own).

A graded row's status is ``graded``; ``import-error`` when the file could not
be imported (every item lost, the error said once); ``timeout`` / ``crashed``
when an item ran out of time or killed its process (the score counts what did
run).  A grader fault on one submission gives ``ungradable`` and an empty
score, never a zero.  A rerun skips every submission whose graded bytes, rubric, reference
and measurement keys are unchanged (its score is composed again from the stored
results: a rubric change that needs no new run costs no child); ``--items``
reruns given items, ``--only`` given students, ``--force`` everything; the gradebook is
rewritten atomically after each submission, so Ctrl-C leaves one that holds
everything that finished.

``--ray [ADDRESS]`` grades on a Ray cluster instead of local threads
(``ray.py``); everything else is as here.

The modules: ``discovery`` (the layouts, the row names, zips), ``state``
(DIR: rows, resume keys, measurements, the gradebook), ``grading`` (one submission),
``rescore`` (the ``rescore`` command),
``progress`` (the terminal, Ctrl-C), ``run`` (the command and the local
worker pool), ``ray`` (the Ray driver and tasks).

Exit status: 0 every submission found was graded or skipped with a reason,
1 some are ungradable, 2 a usage error or a fault that affects every
submission (a bad rubric, a failing reference: nothing is graded),
130 interrupted.
"""

from __future__ import annotations

from .discovery import Discovery, Submission, discover, extract_zip, safe_name
from .grading import Outcome
from .progress import Progress
from .run import add_arguments, grade_all, lock, run_batch
from .state import Output, context_digest

__all__ = ["Discovery", "Outcome", "Output", "Progress", "Submission", "add_arguments",
           "context_digest", "discover", "extract_zip", "grade_all", "lock", "run_batch",
           "safe_name"]

_Progress = Progress   # the name tests/test_report.py uses
