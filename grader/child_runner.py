"""The sandboxed side of the grader: imports a submission and probes it.

This file is copied into an empty work directory beside the submission (with
``protocol.py`` as ``grader_protocol.py``) and run there, inside the sandbox,
as a fresh Python process.  It is the only grader code that ever executes
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

Standard library, numpy and TensorFlow only; nothing from the grader package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import re
import sys
import traceback

MAX_LIST = 100_000


# --------------------------------------------------------------------------
# plumbing


class _CappedText(io.TextIOBase):
    """A text sink that keeps the first ``cap`` characters and drops the rest."""

    def __init__(self, cap: int):
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        s = str(s)
        room = self.cap - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def text(self) -> str:
        return "".join(self.parts)


class StudentError(Exception):
    """Student code raised, or returned something unusable."""

    def __init__(self, message: str, tb: str = ""):
        super().__init__(message)
        self.tb = tb


def _student_traceback(exc: BaseException, submission: str) -> str:
    """The traceback cut to the submission's own frames."""
    if isinstance(exc, NotImplementedError):
        return ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.basename(f.filename) == submission]
    lines = [f"{submission}, line {f.lineno}, in {f.name}: {(f.line or '').strip()}"
             for f in frames[-6:]]
    return "\n".join(lines)[-4000:]


class Harness:
    """What every probe gets: the submission module, TensorFlow and the job."""

    def __init__(self, module, tf, np, job: dict):
        self.module = module
        self.tf = tf
        self.np = np
        self.job = job
        self.submission = job["submission"]
        self.captured = ""

    def call(self, name: str, *args, **kwargs):
        """Call the submission's ``name``; any exception becomes a StudentError."""
        fn = getattr(self.module, name, None)
        if fn is None or not callable(fn):
            raise StudentError(f"your file defines no function {name}()")
        sink = _CappedText(int(self.job.get("output_chars", 20000)))
        try:
            with contextlib.redirect_stdout(sink):
                return fn(*args, **kwargs)
        except NotImplementedError as exc:
            raise StudentError(f"{name}() is not implemented yet "
                               f"(it raised NotImplementedError)",
                               _student_traceback(exc, self.submission)) from None
        except GraderLimit:
            raise
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too
            message = f"{name}() raised {type(exc).__name__}: {_short(exc)}"
            raise StudentError(message, _student_traceback(exc, self.submission)) from None
        finally:
            self.captured = sink.text()

    def session(self):
        return self.tf.Session(config=self.config())

    def config(self):
        threads = int(self.job.get("threads", 1))
        return self.tf.ConfigProto(intra_op_parallelism_threads=threads,
                                   inter_op_parallelism_threads=threads)

    def run(self, sess, fetches, feed=None, what: str = "evaluating your tensors"):
        try:
            return sess.run(fetches, feed_dict=feed)
        except Exception as exc:
            raise StudentError(f"{what} failed: {type(exc).__name__}: {_short(exc)}") from None


class GraderLimit(Exception):
    """Raised by the grader's own objects when the submission overuses them."""


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_TF_NODE = re.compile(r"\[\[.*?\]\]|\(defined at .*?\)")
_UNINITIALIZED = re.compile(r"(uninitialized value) \S+")


def _short(exc: BaseException) -> str:
    """One reproducible line: no object addresses, temporary paths or graph node names."""
    text = str(exc)
    if type(exc).__module__.startswith("tensorflow"):
        text = text.strip().splitlines()[0] if text.strip() else ""
        text = _UNINITIALIZED.sub(r"\1 of a variable", _TF_NODE.sub("", text))
    text = _ADDRESS.sub("", text).replace(os.getcwd() + os.sep, "")
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


def describe(tf, obj) -> dict:
    """Plain facts about a returned object: type, tensor dtype and static shape."""
    info = {"type": type(obj).__name__, "is_tensor": False}
    try:
        if isinstance(obj, tf.Variable):
            info["is_variable"] = True
        if isinstance(obj, (tf.Tensor, tf.Variable)):
            info["is_tensor"] = True
            info["dtype"] = str(obj.dtype.base_dtype.name)
            dims = obj.shape.as_list() if obj.shape.dims is not None else None
            info["shape"] = None if dims is None else [None if d is None else int(d) for d in dims]
            info["op"] = str(obj.op.type)
        elif isinstance(obj, tf.Operation):
            info["op"] = str(obj.type)
    except Exception as exc:  # a rigged object: report what we can
        info["describe_error"] = _short(exc)
    return info


def _float_list(np, values) -> tuple[list, list]:
    """Convert a returned sequence to floats, remembering each element's type."""
    floats, types = [], []
    for v in list(values)[:MAX_LIST]:
        types.append(type(v).__name__)
        try:
            floats.append(float(np.asarray(v, dtype=np.float64).reshape(())))
        except Exception:
            floats.append(float("nan"))
    return floats, types


# --------------------------------------------------------------------------
# probes: one per contract function; each returns a dict of plain values


def probe_create_placeholders(h: Harness, inputs, params) -> dict:
    tf, np = h.tf, h.np
    result = h.call("create_placeholders")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise StudentError(f"create_placeholders() returned {type(result).__name__}, "
                           "expected a pair (X, Y)")
    X, Y = result
    out = {"X": describe(tf, X), "Y": describe(tf, Y)}
    # Feed the grader's batch through each placeholder: the parent checks the sums itself.
    for name, tensor, weights in (("X", X, "KX"), ("Y", Y, "KY")):
        if not out[name].get("is_tensor") or not inputs:
            continue
        try:
            total = tf.reduce_sum(tf.cast(tensor, tf.float64) * inputs[weights].astype(np.float64))
            with h.session() as sess:
                value = sess.run(total, feed_dict={tensor: inputs[name]})
        except Exception as exc:  # a shape or dtype the batch does not fit: the check says so
            out[name]["feed_error"] = _short(exc)
            continue
        out["value_fed_" + name] = np.asarray(value, dtype=np.float64)
    return out


def probe_initialize_parameters(h: Harness, inputs, params) -> dict:
    tf, np = h.tf, h.np
    n_hidden = params.get("n_hidden")
    result = h.call("initialize_parameters") if n_hidden is None else \
        h.call("initialize_parameters", n_hidden=n_hidden)
    if not isinstance(result, dict):
        raise StudentError(f"initialize_parameters() returned {type(result).__name__}, "
                           "expected a dict")
    out: dict = {"keys": sorted(str(k) for k in result)[:50]}
    trainable = {id(v) for v in tf.trainable_variables()}
    variables = {}
    for key in ("W1", "b1", "W2", "b2"):
        value = result.get(key)
        if value is None:
            continue
        info = describe(tf, value)
        info["trainable"] = id(value) in trainable or (
            hasattr(value, "_variable") and id(value._variable) in trainable)
        out[key] = info
        if info.get("is_tensor"):
            variables[key] = value
    with h.session() as sess:
        h.run(sess, tf.global_variables_initializer(), what="initializing your variables")
        values = h.run(sess, variables, what="reading your parameters")
    for key, value in values.items():
        out["value_" + key] = np.asarray(value, dtype=np.float32)
    return out


def probe_forward_propagation(h: Harness, inputs, params) -> dict:
    tf, np = h.tf, h.np
    X = tf.placeholder(tf.float32, [None, 28, 28], name="X")
    parameters = {k: tf.Variable(inputs[k], name=k) for k in ("W1", "b1", "W2", "b2")}
    result = h.call("forward_propagation", X, parameters)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise StudentError(f"forward_propagation() returned {type(result).__name__}, "
                           "expected a pair (Z2, A2)")
    Z2, A2 = result
    out = {"Z2": describe(tf, Z2), "A2": describe(tf, A2)}
    with h.session() as sess:
        h.run(sess, tf.global_variables_initializer(), what="initializing variables")
        z, a = h.run(sess, [Z2, A2], {X: inputs["X"]}, what="running (Z2, A2)")
    out["value_Z2"] = np.asarray(z, dtype=np.float64)
    out["value_A2"] = np.asarray(a, dtype=np.float64)
    return out


def _scalar_probe(h: Harness, inputs, name: str, key: str) -> dict:
    tf, np = h.tf, h.np
    Z = tf.placeholder(tf.float32, [None, 10], name="Z2")
    Y = tf.placeholder(tf.float32, [None, 10], name="Y")
    result = h.call(name, Z, Y)
    out = {key: describe(tf, result)}
    with h.session() as sess:
        h.run(sess, tf.global_variables_initializer(), what="initializing variables")
        value = h.run(sess, result, {Z: inputs["Z"], Y: inputs["Y"]},
                      what=f"running the {key} tensor")
    out["value_" + key] = np.asarray(value, dtype=np.float64)
    return out


def probe_compute_cost(h: Harness, inputs, params) -> dict:
    return _scalar_probe(h, inputs, "compute_cost", "cost")


def probe_compute_accuracy(h: Harness, inputs, params) -> dict:
    return _scalar_probe(h, inputs, "compute_accuracy", "accuracy")


def _assignment_graph(h: Harness, inputs):
    """The assignment's problem: softmax cross-entropy of LINEAR -> RELU -> LINEAR,
    with the grader's parameters (the variables the student's optimizer trains)."""
    tf = h.tf
    X = tf.placeholder(tf.float32, [None, 28, 28], name="X")
    Y = tf.placeholder(tf.float32, [None, 10], name="Y")
    parameters = {k: tf.Variable(inputs[k], name=k) for k in ("W1", "b1", "W2", "b2")}
    hidden = tf.nn.relu(tf.matmul(tf.reshape(X, [-1, 784]), parameters["W1"]) + parameters["b1"])
    logits = tf.matmul(hidden, parameters["W2"]) + parameters["b2"]
    cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=logits))
    return X, Y, parameters, cost


def probe_create_train_step(h: Harness, inputs, params) -> dict:
    """Run the student's step ``steps`` times on the grader's network and images.

    Hands back the parameters after every step (``value_<P>_trace``, one row
    per step) and, from a second run with learning_rate=0, the parameters at
    the end (``value_<P>_lr0``).  The parent recomputes the cost from them.
    """
    tf, np = h.tf, h.np
    out: dict = {}
    steps = int(params["steps"])
    for label, rate in (("", params["learning_rate"]), ("_lr0", 0.0)):
        with tf.Graph().as_default():
            tf.set_random_seed(int(h.job["seed"]))
            X, Y, parameters, cost = _assignment_graph(h, inputs)
            step = h.call("create_train_step", cost, learning_rate=rate)
            out["step" + label] = describe(tf, step)
            if not isinstance(step, (tf.Operation, tf.Tensor, tf.Variable)):
                kind = type(step).__name__
                hint = (" object itself: return optimizer.minimize(cost), the operation that "
                        "performs one step" if "Optimizer" in kind else
                        ", not an operation: return optimizer.minimize(cost)")
                raise StudentError(f"create_train_step() returned the {kind}{hint}")
            feed = {X: inputs["X"], Y: inputs["Y"]}
            trace: dict = {k: [] for k in parameters}
            with h.session() as sess:
                h.run(sess, tf.global_variables_initializer(), what="initializing variables")
                for _ in range(steps):
                    h.run(sess, step, feed, what="running your training step")
                    if label == "":
                        values = h.run(sess, parameters, what="reading the parameters")
                        for k in parameters:
                            trace[k].append(values[k])
                if label == "_lr0":
                    values = h.run(sess, parameters, what="reading the parameters")
            for k in parameters:
                if label == "":
                    out[f"value_{k}_trace"] = np.asarray(trace[k], dtype=np.float32)
                else:
                    out[f"value_{k}_lr0"] = np.asarray(values[k], dtype=np.float32)
    return out


def probe_initialize_session(h: Harness, inputs, params) -> dict:
    tf, np = h.tf, h.np
    graph = tf.get_default_graph()
    # Random in the graph: its value after initialization is the reference's, not an input.
    seed = int(h.job["seed"]) % (2**31 - 1)
    tf.Variable(tf.random_uniform(inputs["A"].shape, seed=seed) + inputs["A"], name="grader_a")
    tf.get_variable("grader_b", shape=[7, 5], initializer=tf.glorot_uniform_initializer())
    tf.Variable(tf.constant(3.0, shape=[4]), name="grader_c")
    tf.Variable(tf.zeros([2]), name="grader_step", trainable=False)  # as optimizers make
    sess = h.call("initialize_session")
    out = {"session": describe(tf, sess)}
    is_session = isinstance(sess, tf.Session) or isinstance(sess, tf.InteractiveSession)
    out["is_session"] = bool(is_session)
    if not is_session:
        return out
    if getattr(sess, "_closed", False):
        raise StudentError("initialize_session() returned a closed session: a `with tf.Session()` "
                           "block closes it on leaving: create the session outside any with "
                           "block and return it open")
    out["same_graph"] = bool(sess.graph is graph)
    names = h.run(sess, tf.report_uninitialized_variables(), what="listing uninitialized variables")
    out["uninitialized"] = sorted(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    out["n_variables"] = len(tf.global_variables())
    if not out["uninitialized"]:
        a = h.run(sess, graph.get_tensor_by_name("grader_a:0"), what="reading a variable")
        out["value_a"] = np.asarray(a, dtype=np.float64)
    return out


def _linear_task(tf, inputs):
    """Placeholders and the stand-in cost of ``train`` and ``evaluate``,
    mean((x . u) * (y . v)) (``inputs.linear_cost`` in the parent): (X, Y, flat X, cost)."""
    X = tf.placeholder(tf.float32, [None, 28, 28], name="X")
    Y = tf.placeholder(tf.float32, [None, 10], name="Y")
    flat = tf.reshape(X, [-1, 784])
    cost = tf.reduce_mean(tf.reduce_sum(flat * tf.constant(inputs["u"], tf.float32), axis=1)
                          * tf.reduce_sum(Y * tf.constant(inputs["v"], tf.float32), axis=1))
    return X, Y, flat, cost


class _RecordingSplit:
    """The grader's ``mnist.train``: serves real batches and records their sizes.

    The parent replays the same DataSet from the sizes to know each batch's cost."""

    def __init__(self, dataset, limit: int):
        self._data = dataset
        self._limit = limit
        self.images = dataset.images
        self.labels = dataset.labels
        self.num_examples = dataset.num_examples
        self.sizes: list[int] = []

    def next_batch(self, batch_size, *args, **kwargs):
        if len(self.sizes) >= self._limit:
            raise GraderLimit(f"train() asked for more than {self._limit} batches")
        self.sizes.append(int(batch_size))
        return self._data.next_batch(batch_size, *args, **kwargs)


class _Splits:
    def __init__(self, train, test):
        self.train = train
        self.test = test


def probe_train(h: Harness, inputs, params) -> dict:
    tf, np = h.tf, h.np
    import mnist_loader

    seed = int(h.job["seed"])
    steps, batch, every = int(params["num_steps"]), int(params["batch_size"]), int(params["print_every"])
    X, Y, _, cost = _linear_task(tf, inputs)
    counter = tf.Variable(0, dtype=tf.int64, name="steps_run")
    fed = tf.Variable(0.0, dtype=tf.float64, name="fed_total")
    # Like a real step, it needs the batch fed; it adds up the cost of what it was fed.
    train_step = tf.group(tf.assign_add(counter, 1), tf.assign_add(fed, tf.cast(cost, tf.float64)))
    data = mnist_loader.DataSet(inputs["images"], inputs["labels"], seed=seed)
    split = _RecordingSplit(data, 3 * steps + 10)
    mnist = _Splits(split, mnist_loader.DataSet(inputs["images"][:10], inputs["labels"][:10]))
    with h.session() as sess:
        h.run(sess, tf.global_variables_initializer(), what="initializing variables")
        try:
            returned = h.call("train", sess, train_step, cost, X, Y, mnist,
                              num_steps=steps, batch_size=batch, print_every=every)
        except GraderLimit as exc:
            raise StudentError(str(exc) + ": did train() ignore num_steps?") from None
        steps_run, fed_total = h.run(sess, [counter, fed], what="reading the step counter")
    out = {"printed": h.captured, "batch_sizes": split.sizes[:MAX_LIST],
           "value_fed_total": np.float64(fed_total),
           "steps_run": int(steps_run), "returned": {"type": type(returned).__name__}}
    if isinstance(returned, (list, tuple)) or type(returned).__name__ == "ndarray":
        floats, types = _float_list(np, returned)
        out["value_returned"] = np.asarray(floats, dtype=np.float64)
        out["returned"]["element_types"] = sorted(set(types))
    return out


def probe_evaluate(h: Harness, inputs, params) -> dict:
    tf, np = h.tf, h.np
    X, Y, flat, cost = _linear_task(tf, inputs)
    scores = tf.matmul(flat, tf.constant(inputs["R"], tf.float32))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(scores, 1), tf.argmax(Y, 1)), tf.float32))
    with h.session() as sess:
        returned = h.call("evaluate", sess, cost, accuracy, X, Y,
                          inputs["images"], inputs["labels"])
    out = {"returned": {"type": type(returned).__name__}}
    if isinstance(returned, (tuple, list)):
        floats, types = _float_list(np, returned)
        out["returned"]["element_types"] = types[:10]
        out["value_returned"] = np.asarray(floats[:10], dtype=np.float64)
    return out


def probe_improvements(h: Harness, inputs, params) -> dict:
    text = getattr(h.module, "IMPROVEMENTS", None)
    if not isinstance(text, str):
        return {"text_type": type(text).__name__, "text": ""}
    return {"text_type": "str", "text": text[:20000]}


def _plain_gradient_descent(graph) -> bool:
    """Whether the graph's only optimizer updates are plain gradient descent."""
    kinds = {op.type for op in graph.get_operations() if "Apply" in op.type}
    return bool(kinds) and all("GradientDescent" in kind for kind in kinds)


def _build_pipeline(h: Harness, params: dict, learning_rate: float):
    pair = h.call("create_placeholders")
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise StudentError("create_placeholders() did not return a pair (X, Y)")
    X, Y = pair
    parameters = h.call("initialize_parameters", n_hidden=int(params["n_hidden"]))
    pair = h.call("forward_propagation", X, parameters)
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise StudentError("forward_propagation() did not return a pair (Z2, A2)")
    Z2 = pair[0]
    cost = h.call("compute_cost", Z2, Y)
    step = h.call("create_train_step", cost, learning_rate=learning_rate)
    return X, Y, Z2, cost, step


def probe_model(h: Harness, inputs, params) -> dict:
    """Train the submission's own pipeline; hand back its test predictions.

    The learning rate is the rubric's; a plain gradient-descent optimizer gets
    the rubric's ``sgd_learning_rate`` instead, since a rate made for Adam
    leaves it barely moving (any optimizer is a correct answer).
    """
    tf, np = h.tf, h.np
    import mnist_loader

    seed = int(h.job["seed"])
    labels = np.zeros((len(inputs["train_labels"]), 10), np.float32)
    labels[np.arange(len(labels)), inputs["train_labels"]] = 1.0
    train = mnist_loader.DataSet(inputs["train_images"].astype(np.float32) / 255, labels, seed=seed)
    test_images = inputs["test_images"].astype(np.float32) / 255
    # The test labels stay with the grader: the submission's test split says "0" throughout.
    dummy = np.zeros((len(test_images), 10), np.float32)
    dummy[:, 0] = 1.0
    mnist = _Splits(train, mnist_loader.DataSet(test_images, dummy))
    rate = float(params["learning_rate"])
    X, Y, Z2, cost, step = _build_pipeline(h, params, rate)
    sgd_rate = params.get("sgd_learning_rate")
    if sgd_rate and _plain_gradient_descent(tf.get_default_graph()):
        rate = float(sgd_rate)
        with tf.Graph().as_default():
            tf.set_random_seed(seed)
            X, Y, Z2, cost, step = _build_pipeline(h, params, rate)
            return _train_and_predict(h, X, Y, Z2, cost, step, mnist, test_images, params, rate)
    return _train_and_predict(h, X, Y, Z2, cost, step, mnist, test_images, params, rate)


def _train_and_predict(h: Harness, X, Y, Z2, cost, step, mnist, test_images, params,
                       rate: float) -> dict:
    np = h.np
    sess = h.call("initialize_session")
    costs = h.call("train", sess, step, cost, X, Y, mnist, num_steps=int(params["steps"]),
                   batch_size=int(params["batch_size"]), print_every=int(params["steps"]))
    predictions = []
    for start in range(0, len(test_images), 1000):
        logits = h.run(sess, Z2, {X: test_images[start:start + 1000]},
                       what="computing predictions on the test images")
        predictions.append(np.argmax(np.asarray(logits), axis=1))
    floats, _ = _float_list(np, costs if isinstance(costs, (list, tuple)) else [])
    return {"value_predictions": np.concatenate(predictions).astype(np.int64),
            "value_costs": np.asarray(floats, dtype=np.float64), "learning_rate": rate}


PROBES = {
    "create_placeholders": probe_create_placeholders,
    "initialize_parameters": probe_initialize_parameters,
    "forward_propagation": probe_forward_propagation,
    "compute_cost": probe_compute_cost,
    "compute_accuracy": probe_compute_accuracy,
    "create_train_step": probe_create_train_step,
    "initialize_session": probe_initialize_session,
    "train": probe_train,
    "evaluate": probe_evaluate,
    "improvements": probe_improvements,
    "model": probe_model,
}


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
    import grader_protocol

    channel = grader_protocol.Writer(int(os.environ[grader_protocol.FD_VARIABLE]))
    np, tf = start_tensorflow()
    seed = int(job["seed"])
    channel.event(grader_protocol.READY)

    _seed_everything(tf, np, seed)
    spec = importlib.util.spec_from_file_location("tensorflow_tutorial", job["submission"])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tensorflow_tutorial"] = module
    sink = _CappedText(int(job.get("output_chars", 20000)))
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
            outputs = {"error": {"message": str(exc), "traceback": exc.tb}}
        except Exception as exc:  # the submission broke the grader's own objects
            outputs = {"error": {"message": f"{type(exc).__name__}: {_short(exc)}",
                                 "traceback": _student_traceback(exc, job["submission"])}}
        _send_result(channel, task["id"], outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
