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


def _limit_threads(threads: int) -> None:
    """Make ``threads`` the default of every session, the submission's own ``tf.Session()``
    included (a session made without a config takes the runtime's). Left to TensorFlow, a
    session uses every core, and with two children side by side the threads fight: 1,500
    training steps took 2.3-2.7 s and 3.3-3.8 s of CPU, against 1.5-1.8 s for both with one
    thread. It must come before the runtime starts, which no op has done yet here."""
    import tensorflow as tf2
    try:
        tf2.config.threading.set_intra_op_parallelism_threads(threads)
        tf2.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime had started: TensorFlow's defaults stay
        pass


def _bind_grading_data(module, job: dict, np) -> None:
    """Run the submission's statements that only read the data it loads at top level.

    The parent's filter marks them in the extracted script as ``# from the grading data
    (mnist): n_input = mnist.train.images.shape[1] * ...`` (further lines ``# skipped,
    continued: ...``).  Each runs once, in order, in the module's namespace, with the
    names in parentheses bound to a stand-in of the grading data: the training split the
    ``model`` item trains on (else no example), the test images without their labels,
    and the facts of MNIST under the names tutorials use.  A statement that fails leaves
    its names unset (the parent's message then names its line).  Nothing here is more
    than the submission's own code running in its own sandbox.
    """
    import types

    marker, continued = "# from the grading data (", "# skipped, continued: "
    try:
        with open(job["submission"], encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return
    if not lines or not lines[0].startswith("# Python extracted from "):
        return
    found = []
    for i, line in enumerate(lines):
        if line.startswith(marker):
            names, _, code = line[len(marker):].partition("): ")
            parts, j = [code], i + 1
            while j < len(lines) and lines[j].startswith(continued):
                parts.append(lines[j][len(continued):])
                j += 1
            found.append((i + 1, [n for n in names.split(", ") if n.isidentifier()],
                          "\n".join(parts)))
    if not found:
        return
    test = np.zeros((0, 28, 28), np.uint8)
    train = types.SimpleNamespace(images=np.zeros((0, 28, 28), np.float32),
                                  labels=np.zeros((0, 10), np.float32), num_examples=0)
    model = next((t for t in job["tasks"] if t.get("probe") == "model" and t.get("inputs")), None)
    try:
        import mnist_loader
        if model is not None:
            with np.load(model["inputs"], allow_pickle=False) as arrays:
                train = mnist_loader.DataSet(arrays["train_images"], arrays["train_labels"],
                                             seed=int(job["seed"]))
                if "test_images" in arrays.files:   # the model item sends none now
                    test = arrays["test_images"]
    except Exception:   # the stand-in then has no example
        pass
    test_images = test.astype(np.float32) / 255
    data = types.SimpleNamespace(
        train=train, test=types.SimpleNamespace(images=test_images, num_examples=len(test)),
        img_size=28, img_size_flat=784, img_shape=(28, 28), img_shape_full=(28, 28, 1),
        num_channels=1, num_classes=10, num_train=train.num_examples, num_test=len(test),
        x_train=train.images.reshape(-1, 784), y_train=train.labels,
        y_train_cls=np.argmax(train.labels, axis=1), x_test=test_images.reshape(-1, 784))
    namespace = module.__dict__
    for number, names, code in found:
        saved = {n: namespace[n] for n in names if n in namespace}
        namespace.update(dict.fromkeys(names, data))
        try:
            with contextlib.redirect_stdout(_CappedText(0)):
                exec(compile("\n" * (number - 1) + code, job["submission"], "exec"), namespace)
        except Exception:
            pass
        finally:
            for name in names:
                namespace.pop(name, None)
            namespace.update(saved)


def main() -> int:
    with open("job.json", encoding="utf-8") as f:
        job = json.load(f)
    sys.path.insert(0, os.getcwd())
    channel = protocol.Writer(int(os.environ[protocol.FD_VARIABLE]))
    np, tf = start_tensorflow()
    _limit_threads(int(job.get("threads", 1)))
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
    _bind_grading_data(module, job, np)
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
