"""The sandboxed side of the grader: imports a submission and probes it.

This package (``grader/inside/``) is copied into an empty work directory
beside the submission, as the package ``grader_inside``, and this module is
run there, inside the sandbox, as a fresh Python process
(``python -m grader_inside.runner``), or called by a child forked from the
zygote (``zygote_server.py``).  It is the only grader code that ever executes
student code, and nothing it produces is trusted: it sends plain numeric
arrays and JSON as frames on the inherited channel (file descriptor
``$GRADER_CHANNEL_FD``, see ``protocol.py``), which the parent validates,
compares and scores.  It never writes a result into a file.

It reads ``job.json``::

    {"submission": "tensorflow_tutorial.py", "seed": 1, "output_chars": 20000,
     "tasks": [{"id": "Q4-hidden", "probe": "forward_propagation", "seed": 7,
                "inputs": "inputs/Q4-hidden.npz", "params": {...}}, ...]}

and sends ``ready`` once TensorFlow is imported, then one result per task, in
the job's order, beginning with ``import`` (importing the submission).  The
parent keeps the clock: a result can only end an item's budget early.

Standard library, numpy and TensorFlow only; nothing from the grader outside this package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import sys

from . import protocol
from .harness import Harness, StudentError, _CappedText, _short, _student_traceback
from .probes import PROBES

# --------------------------------------------------------------------------
# the job


def _send_result(channel, task_id: str, outputs: dict) -> None:
    try:
        channel.result(task_id, outputs)
    except (TypeError, ValueError) as exc:  # the submission handed back something odd
        channel.result(task_id, {"error": {"message": f"the result could not be sent: {_short(exc)}",
                                           "traceback": ""}})


def _seed_everything(tf, np, seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    tf.set_random_seed(seed)


def start_tensorflow():
    """Import and configure TensorFlow, running no op and starting no session:
    (numpy, tensorflow.compat.v1). The zygote calls it once before it forks
    (so that a forked child finds it done), a fresh child at its start."""
    import numpy as np
    import tensorflow as tf2
    import tensorflow.compat.v1 as tf

    tf.disable_v2_behavior()
    tf2.config.experimental.enable_op_determinism()
    tf.logging.set_verbosity(tf.logging.ERROR)
    return np, tf


def main() -> int:
    with open("job.json", encoding="utf-8") as f:
        job = json.load(f)
    sys.path.insert(0, os.getcwd())
    channel = protocol.Writer(int(os.environ[protocol.FD_VARIABLE]))
    np, tf = start_tensorflow()
    seed = int(job["seed"])
    channel.event(protocol.READY)

    _seed_everything(tf, np, seed)
    spec = importlib.util.spec_from_file_location("tensorflow_tutorial", job["submission"])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tensorflow_tutorial"] = module
    sink = _CappedText(int(job.get("output_chars", 20000)))
    probes = dict(PROBES)  # the grader's own, to tell whether the submission replaced any
    try:
        with contextlib.redirect_stdout(sink):
            spec.loader.exec_module(module)
    except BaseException as exc:
        if isinstance(exc, SyntaxError):
            where = f" (line {exc.lineno})" if exc.lineno else ""
            message = f"your file has a syntax error{where}: {exc.msg}"
        else:
            message = f"importing your file raised {type(exc).__name__}: {_short(exc)}"
        _send_result(channel, "import", {"error": {
            "message": message, "traceback": _student_traceback(exc, job["submission"])}})
        return 0
    _send_result(channel, "import", {})

    harness = Harness(module, tf, np, job)
    for task in job["tasks"]:
        outputs = _run_task(harness, task, tf, np, seed, job["submission"])
        changed = _changed_probes(probes)
        if changed and isinstance(outputs, dict) and "error" not in outputs:
            outputs["tampered"] = changed  # a flag for a human to review, never a score
        _send_result(channel, task["id"], outputs)
    return 0


def _changed_probes(before: dict) -> list:
    """The probes that are no longer the grader's own (replaced, added or removed)."""
    now = globals().get("PROBES")
    now = now if isinstance(now, dict) else {}
    return sorted(str(k)[:64] for k in set(before) | set(now) if now.get(k) is not before.get(k))[:20]


def _run_task(harness, task: dict, tf, np, seed: int, submission: str) -> dict:
    """One task: its probe on its inputs, in a graph of its own; the outputs to send."""
    inputs = {}
    if task.get("inputs"):
        with np.load(task["inputs"], allow_pickle=False) as data:
            inputs = {k: data[k] for k in data.files}
    try:
        with tf.Graph().as_default():
            harness.job["seed"] = int(task.get("seed", seed))
            _seed_everything(tf, np, harness.job["seed"])
            outputs = PROBES[task["probe"]](harness, inputs, task.get("params", {}))
    except StudentError as exc:
        outputs = {"error": {"message": str(exc), "traceback": exc.tb,
                             **({"unanswered": True} if exc.unanswered else {})}}
    except Exception as exc:  # the submission broke the grader's own objects
        outputs = {"error": {"message": f"{type(exc).__name__}: {_short(exc)}",
                             "traceback": _student_traceback(exc, submission)}}
    return outputs


if __name__ == "__main__":
    sys.exit(main())
