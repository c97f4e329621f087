"""The check kinds: one function each, registered under the name rubric.yaml uses.

A check looks at one probe's output (``ctx.got``), usually against the
reference's output on the same inputs (``ctx.expected``), and returns a
:class:`Verdict`.  It runs in the trusted parent on arrays and JSON already
validated against what its probe declares (``grader/probes.py``): nothing
here touches submission code, and a check that raises is a grader bug
(the grade is ungradable), never the student's score.

What every kind shares is ``checks_base``; the kinds live in one module per
family: ``checks_values`` (placeholders, parameters, values against the
reference), ``checks_training`` (the train step, the session),
``checks_loop`` (the training loop, evaluate, the whole model),
``checks_text`` (the open question).  This module gathers them.

Adding a kind: write ``def my_kind(ctx) -> Verdict`` in the family it
belongs to, decorate it with ``@check("my_kind", required={...},
optional={...}, probes=(...), targets={...}, reference=...)``; rubric
validation then accepts it where it fits and checks its parameters.
"""

from __future__ import annotations

from . import checks_loop, checks_text, checks_training, checks_values  # noqa: F401  (they register)
from .checks_base import (ADVICE_PREFIX, CHECKS, COMMON_KEYS, CheckKind, Context, Verdict, check,
                   fmt_shape, fmt_value, one_of, run_diagnoses)
from .checks_loop import MAX_PRINTED_CHARS, replay_batch_costs, served_cost_limit
from .checks_text import FREE_TEXT_MODES, improvement_terms
from .checks_training import PARAMETER_NAMES, mlp_cost, mlp_gradient

__all__ = ["ADVICE_PREFIX", "CHECKS", "COMMON_KEYS", "CheckKind", "Context", "FREE_TEXT_MODES",
           "MAX_PRINTED_CHARS", "PARAMETER_NAMES", "Verdict", "check", "fmt_shape", "fmt_value",
           "improvement_terms", "mlp_cost", "mlp_gradient", "one_of", "replay_batch_costs",
           "run_diagnoses", "served_cost_limit"]
