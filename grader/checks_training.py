"""Check kinds on the training step (Q7) and the session (Q8).

The child runs the student's step on the grader's network and images and
hands back the parameters after every step.  Everything here recomputes the
cost from those parameters and the grader's own inputs: what the child
reports is never taken at its word.
"""

from __future__ import annotations

import math

import numpy as np

from .checks_base import PARAMETER_NAMES, Context, Verdict, _tensor, check
from .diagnoses import close
from .numerics import log_softmax, softmax

def _mlp_logits(x: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    z1 = x @ p["W1"] + p["b1"].reshape(-1)
    return z1, np.maximum(z1, 0.0) @ p["W2"] + p["b2"].reshape(-1)


def mlp_cost(x: np.ndarray, y: np.ndarray, p: dict) -> float:
    """The mean softmax cross-entropy of LINEAR -> RELU -> LINEAR (float64, NaN-safe)."""
    with np.errstate(all="ignore"):
        _, z = _mlp_logits(x, p)
        return float(-(y * log_softmax(z)).sum(axis=1).mean())


def mlp_gradient(x: np.ndarray, y: np.ndarray, p: dict) -> dict:
    """The gradient of :func:`mlp_cost` with respect to W1, b1, W2, b2."""
    with np.errstate(all="ignore"):
        z1, z = _mlp_logits(x, p)
        a1 = np.maximum(z1, 0.0)
        probs = softmax(z)
        dz = (probs - y) / len(x)
        dz1 = (dz @ p["W2"].T) * (z1 > 0)
        return {"W1": x.T @ dz1, "b1": dz1.sum(axis=0), "W2": a1.T @ dz, "b2": dz.sum(axis=0)}


def _problem(ctx: Context) -> tuple[np.ndarray, np.ndarray, dict]:
    x = np.asarray(ctx.inputs["X"], dtype=np.float64).reshape(len(ctx.inputs["X"]), -1)
    y = np.asarray(ctx.inputs["Y"], dtype=np.float64)
    start = {k: np.asarray(ctx.inputs[k], dtype=np.float64) for k in PARAMETER_NAMES}
    return x, y, start


def _float_array(value, shape: tuple) -> np.ndarray | None:
    """``value`` as float64 if it is a float array of exactly ``shape``, else None."""
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.shape != shape:
        return None
    return value.astype(np.float64)


def _traces(ctx: Context, start: dict, steps: int) -> dict | None:
    traces = {}
    for key in PARAMETER_NAMES:
        value = _float_array(ctx.got.array(f"{key}_trace"), (steps, *start[key].shape))
        if value is None:
            return None
        traces[key] = value
    return traces


def _uphill(x, y, start: dict, after: dict) -> bool:
    """Whether the first step moved the parameters up the gradient (maximizing)."""
    gradient = mlp_gradient(x, y, start)
    with np.errstate(all="ignore"):
        dot = sum(float(np.sum((after[k] - start[k]) * gradient[k])) for k in PARAMETER_NAMES)
    return math.isfinite(dot) and dot > 0


_MAXIMIZING = ("the first step moved the parameters up the slope of the cost, so training "
               "makes it worse: are you maximizing? Minimize the cost itself: "
               "optimizer.minimize(cost), not minimize(-cost)")


@check("lowers_cost", required={"window": int, "noise_multiple": (int, float),
                                "min_relative_drop": (int, float), "max_blowup": (int, float)},
       probes=("create_train_step",))
def lowers_cost(ctx: Context) -> Verdict:
    """Training with the student's step lowers the assignment's cost.

    Judged over the steps against the cost's own fluctuation, not by a fixed
    percentage: the mean cost of the last ``window`` steps must be below the
    start and below the mean of the first ``window`` steps, by more than
    ``noise_multiple`` times the spread of the last ``window`` costs (how much
    the cost still moves from step to step) and by more than
    ``min_relative_drop`` of the start (what float32 rounding can fake);
    without the cost ever becoming NaN or more than ``max_blowup`` times its
    start (diverging).  A slow but steady descent passes; a cost that jumps up
    and down as much as it falls does not."""
    x, y, start = _problem(ctx)
    steps, k = int(ctx.params["steps"]), int(ctx.spec["window"])
    traces = _traces(ctx, start, steps)
    what = (f"{steps} steps of your optimizer on the assignment's network "
            f"(784 -> {start['W1'].shape[1]} -> 10, softmax cross-entropy) on "
            f"{len(x)} MNIST images")
    if traces is None:
        return Verdict(False, f"the parameters could not be read after {steps} steps",
                       "create_train_step must return optimizer.minimize(cost), the operation "
                       "that performs one step")
    costs = np.array([mlp_cost(x, y, start)] +
                     [mlp_cost(x, y, {key: traces[key][s] for key in PARAMETER_NAMES})
                      for s in range(steps)])
    first_step = {key: traces[key][0] for key in PARAMETER_NAMES}
    c0 = float(costs[0])
    broken = np.flatnonzero(~np.isfinite(costs) | (costs > ctx.spec["max_blowup"] * c0))
    if broken.size:
        at = int(broken[0])
        value = float(costs[at])
        reached = ("NaN" if math.isnan(value) else "infinite" if math.isinf(value) else
                   f"{value:.4g}, {value / c0:.0f}x its start")
        message = f"{what}: the cost went from {c0:.4g} to {reached} at step {at}"
        return _worse(x, y, start, first_step, message, "training diverged",
                      "each step goes downhill but far too far: the learning rate is too large "
                      "for this network (plain gradient descent needs about 0.1-0.5 here, "
                      "Adam 0.001-0.01): use a smaller rate, e.g. the learning_rate argument")
    window = max(1, min(k, (steps + 1) // 2))
    first, last = float(costs[:window].mean()), float(costs[-window:].mean())
    spread = float(costs[-window:].std(ddof=1)) if window > 1 else 0.0
    drop = min(first, c0) - last
    message = (f"{what}: the cost went from {c0:.4g} to {float(costs[-1]):.4g} (mean of the "
               f"first {window} steps {first:.4g}, of the last {window} {last:.4g})")
    resolution = float(ctx.spec["min_relative_drop"]) * c0
    if drop > max(float(ctx.spec["noise_multiple"]) * spread, resolution):
        return Verdict(True, message)
    if all(np.array_equal(traces[key][-1], start[key]) for key in PARAMETER_NAMES):
        return Verdict(False, f"{what}: the parameters never changed",
                       "running the returned operation must update the variables: return "
                       "optimizer.minimize(cost), not the cost or another tensor")
    if last >= c0:
        return _worse(x, y, start, first_step, message, "the cost did not go down",
                      "each run of the training step should lower the cost: minimize the cost "
                      "you are given, with a learning rate that moves the weights (e.g. Adam "
                      "0.001-0.01, gradient descent 0.1-0.5)")
    if last >= first:
        return Verdict(False, f"{message}: the cost fell in the first steps, then rose again",
                       "the later steps undo the first ones: the learning rate is too large "
                       "for this network (Adam 0.001-0.01, gradient descent 0.1-0.5 train it)")
    if drop <= resolution:
        return Verdict(False, f"{message}: it went down by {drop:.2g} only, too little to tell "
                              "from rounding",
                       "the step hardly moves the weights: use a larger learning rate (e.g. "
                       "Adam 0.001-0.01, gradient descent 0.1-0.5)")
    return Verdict(False, f"{message}: it went down by {drop:.2g}, less than the "
                          f"{ctx.spec['noise_multiple']:g}x its step-to-step spread at the end "
                          f"({spread:.2g}) that tells a descent from noise",
                   "the cost jumps up and down as much as it falls: a smaller learning rate "
                   "makes each step lower it")


def _worse(x, y, start: dict, first_step: dict, message: str, why: str, hint: str) -> Verdict:
    """Training that failed: named as maximizing when the first step went uphill, else ``why``."""
    if _uphill(x, y, start, first_step):
        return Verdict(False, message, _MAXIMIZING)
    return Verdict(False, f"{message}: {why}", hint)


@check("uses_learning_rate", probes=("create_train_step",))
def uses_learning_rate(ctx: Context) -> Verdict:
    """With learning_rate=0 the step leaves the parameters where they were."""
    _, _, start = _problem(ctx)
    ends = {key: _float_array(ctx.got.array(f"{key}_lr0"), start[key].shape)
            for key in PARAMETER_NAMES}
    if any(v is None for v in ends.values()):
        return Verdict(False, "the parameters could not be read after the steps with "
                              "learning_rate=0",
                       "create_train_step must return optimizer.minimize(cost)")
    if all(np.array_equal(ends[key], start[key]) for key in PARAMETER_NAMES):
        return Verdict(True, "with learning_rate=0 the step leaves the parameters unchanged: "
                             "it uses the learning_rate argument")
    return Verdict(False, "create_train_step(cost, learning_rate=0) still changed the "
                          "parameters: the optimizer uses a rate of its own",
                   "the caller passes the rate to use: build the optimizer from it, e.g. "
                   "tf.train.AdamOptimizer(learning_rate=learning_rate), so that "
                   "`--learning-rate` changes it")


# ---------------------------------------------------------------- session

@check("initialized", probes=("initialize_session",), reference=True)
def initialized(ctx: Context) -> Verdict:
    meta = ctx.got.meta
    if not meta.get("is_session"):
        kind = _tensor(ctx, "session").get("type", "nothing")
        return Verdict(False, f"initialize_session() returned {kind}, not a tf.Session",
                       "create the session with tf.Session() and return it")
    if not meta.get("same_graph"):
        return Verdict(False, "the session runs a different graph than the default one",
                       "create the session without a new tf.Graph(): tf.Session()")
    missing = meta.get("uninitialized", [])
    total = meta.get("n_variables", 0)
    if missing:
        if len(missing) >= total:
            created = meta.get("initializer_created")
            if created is False:
                return Verdict(False, f"none of the {total} variables is initialized: no "
                                      "initializer was created",
                               "create the initializer, init = tf.global_variables_initializer(), "
                               "and run it in the session: sess.run(init)")
            if created:
                return Verdict(False, f"none of the {total} variables is initialized: the "
                                      "initializer was created but never run",
                               "run it in the session, sess.run(init) for "
                               "init = tf.global_variables_initializer(); creating the "
                               "initializer alone does nothing")
            return Verdict(False, f"none of the {total} variables is initialized",
                           "create tf.global_variables_initializer() and run it in the session")
        return Verdict(False, f"{len(missing)} of {total} variables are not initialized "
                              f"({', '.join(missing[:3])})",
                       "use tf.global_variables_initializer(), which covers every variable")
    got = ctx.got.array("a")
    want = ctx.expected.array("a") if ctx.expected is not None else None
    if got is None or want is None or got.shape != want.shape or \
            not close(got, want, rtol=1e-6, atol=1e-6):
        return Verdict(False, "a variable does not hold its initial value after initialization",
                       "run the initializer once and do not assign other values")
    return Verdict(True, f"a tf.Session with all {total} variables initialized")


