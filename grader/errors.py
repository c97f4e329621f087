"""One exception root for every grader fault; the CLI maps it to exit code 2.

A grader fault is never the student's: a rubric that does not validate, a
reference that fails, a sandbox that cannot start.  It is reported as
"ungradable", never as a score of zero.
"""


class GraderError(Exception):
    """Something the grader itself (not the submission) got wrong."""

    exit_code = 2


class UsageError(GraderError):
    """A bad command line or a missing file."""


class RubricError(GraderError):
    """rubric.yaml does not validate; the message lists every problem."""


class UngradableError(GraderError):
    """The grade cannot be computed: the reference failed, the sandbox cannot start..."""
