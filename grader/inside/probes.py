"""The probes: one per contract function, each calling it in the sandbox on the
grader's inputs and returning a dict of plain values (``value_<name>`` for
arrays).  What each returns is declared, for the parent, in ``grader/probes.py``.

Runs in the sandbox, like the rest of ``grader/inside/``; standard library,
numpy (through the harness) and TensorFlow only.
"""

from __future__ import annotations

from .harness import MAX_LIST, GraderLimit, Harness, StudentError, _float_list, _short, describe

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
    before = {op.name for op in graph.get_operations()}
    sess = h.call("initialize_session")
    out = {"session": describe(tf, sess), "initializer_created": _initializer_created(tf, before)}
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


def _initializer_created(tf, before: set) -> bool:
    """Whether a new op of the default graph groups variable initializers (what
    tf.global_variables_initializer() and tf.variables_initializer() make)."""
    try:
        initializers = {v.initializer.name for v in tf.global_variables()}
        return any(op.type == "NoOp" and op.name not in before
                   and any(c.name in initializers for c in op.control_inputs)
                   for op in tf.get_default_graph().get_operations())
    except Exception:  # a graph the student rigged: no answer rather than a wrong one
        return False


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
        self.num_examples = dataset.num_examples
        self.sizes: list[int] = []
        self.arrays_read = False  # the loop read .images or .labels (slicing them itself?)

    @property
    def images(self):
        self.arrays_read = True
        return self._data.images

    @property
    def labels(self):
        self.arrays_read = True
        return self._data.labels

    def __getattr__(self, name):  # anything else a split has (epochs_completed...)
        if "_data" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["_data"], name)

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
           "arrays_read": split.arrays_read, "value_fed_total": np.float64(fed_total),
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
    return X, Y, parameters, cost, step


def probe_model(h: Harness, inputs, params) -> dict:
    """Train the submission's own pipeline; hand back its trained parameters.

    The test images never enter the sandbox: the grader computes the
    predictions of the contract's network from W1, b1, W2 and b2 itself.
    The learning rate is the rubric's; a plain gradient-descent optimizer gets
    the rubric's ``sgd_learning_rate`` instead, since a rate made for Adam
    leaves it barely moving (any optimizer is a correct answer).
    """
    tf, np = h.tf, h.np
    import mnist_loader

    seed = int(h.job["seed"])
    labels = np.zeros((len(inputs["train_labels"]), 10), np.float32)
    labels[np.arange(len(labels)), inputs["train_labels"]] = 1.0
    images = inputs["train_images"].astype(np.float32) / 255
    train = mnist_loader.DataSet(images, labels, seed=seed)
    # No test split here: a submission that reads mnist.test gets training images, labelled "0".
    dummy = np.zeros((min(len(images), 1000), 10), np.float32)
    dummy[:, 0] = 1.0
    # Counts the batches train() draws, so that a loop on one batch is named (no limit here).
    mnist = _Splits(_RecordingSplit(train, 2**62),
                    mnist_loader.DataSet(images[:len(dummy)], dummy))
    rate = float(params["learning_rate"])
    X, Y, parameters, cost, step = _build_pipeline(h, params, rate)
    sgd_rate = params.get("sgd_learning_rate")
    if sgd_rate and _plain_gradient_descent(tf.get_default_graph()):
        rate = float(sgd_rate)
        with tf.Graph().as_default():
            tf.set_random_seed(seed)
            X, Y, parameters, cost, step = _build_pipeline(h, params, rate)
            return _train(h, X, Y, parameters, cost, step, mnist, params, rate)
    return _train(h, X, Y, parameters, cost, step, mnist, params, rate)


def _train(h: Harness, X, Y, parameters, cost, step, mnist, params, rate: float) -> dict:
    np = h.np
    sess = h.call("initialize_session")
    costs = h.call("train", sess, step, cost, X, Y, mnist, num_steps=int(params["steps"]),
                   batch_size=int(params["batch_size"]), print_every=int(params["steps"]))
    # A network without biases is still a network: the grader reads missing ones as zeros.
    names = tuple(k for k in ("W1", "b1", "W2", "b2")
                  if isinstance(parameters, dict) and k in parameters)
    if not {"W1", "W2"} <= set(names):
        raise StudentError("initialize_parameters() did not return a dict with W1 and W2 "
                           "(and b1, b2)")
    values = h.run(sess, [parameters[k] for k in names], {},
                   what="reading the trained parameters W1, b1, W2 and b2")
    floats, _ = _float_list(np, costs if isinstance(costs, (list, tuple)) else [])
    return {**{f"value_{k}": np.asarray(v, dtype=np.float32) for k, v in zip(names, values)},
            "value_costs": np.asarray(floats, dtype=np.float64), "learning_rate": rate,
            "batches_drawn": len(mnist.train.sizes), "arrays_read": mnist.train.arrays_read}


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
