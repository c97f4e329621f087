"""The check kinds: one function each, registered under the name rubric.yaml uses.

A check looks at one probe's output (``ctx.got``), usually against the
reference's output on the same inputs (``ctx.expected``), and returns a
:class:`Verdict`.  It runs in the trusted parent on plain validated arrays
and JSON: nothing here touches submission code.

Adding a kind: write ``def my_kind(ctx) -> Verdict``, decorate it with
``@check("my_kind", required={...}, optional={...})``; rubric validation
then accepts it and checks its parameters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .diagnoses import DIAGNOSES, Case, close
from .outcome import ProbeOutput


@dataclass(frozen=True)
class Verdict:
    """``passed`` or not; ``message`` may show values, ``diagnosis`` never does."""

    passed: bool
    message: str
    diagnosis: str | None = None
    pending: bool = False
    advice: bool = False    # a remark worth no points: never a failure


@dataclass(frozen=True)
class Context:
    spec: dict
    got: ProbeOutput
    expected: ProbeOutput | None
    inputs: dict
    params: dict
    tolerances: dict
    secret: dict = field(default_factory=dict)
    seed: int = 0           # the seed the child was given for this task

    def param(self, key: str, default: Any = None) -> Any:
        return self.spec.get(key, default)


@dataclass(frozen=True)
class CheckKind:
    name: str
    fn: Callable[[Context], Verdict]
    required: dict
    optional: dict


CHECKS: dict[str, CheckKind] = {}
COMMON_KEYS = {"name": str, "kind": str, "weight": (int, float), "visibility": str,
               "hint": str, "diagnoses": list, "asked_by": str, "advice": bool}
ADVICE_PREFIX = "advice (no points): "


def check(name: str, required: dict | None = None, optional: dict | None = None):
    """Register a check kind.  A check the rubric marks ``advice: true`` (worth 0
    points) never fails: what it would have said becomes advice."""
    def register(fn: Callable[[Context], Verdict]):
        def run(ctx: Context) -> Verdict:
            verdict = fn(ctx)
            if ctx.spec.get("advice") is True and not verdict.passed and not verdict.pending:
                return Verdict(True, ADVICE_PREFIX + verdict.message, verdict.diagnosis,
                               advice=True)
            return verdict
        run.__doc__, run.__name__ = fn.__doc__, fn.__name__
        CHECKS[name] = CheckKind(name, run, required or {}, optional or {})
        return fn
    return register


def run_diagnoses(ctx: Context, target: str, got, expected) -> str | None:
    case = Case(target=target, got=np.asarray(got), expected=np.asarray(expected),
                inputs=ctx.inputs, params=ctx.params, outputs=dict(ctx.got.arrays))
    for name in ctx.spec.get("diagnoses", []):
        try:
            found = DIAGNOSES[name](case)
        except (ValueError, IndexError, KeyError, TypeError, FloatingPointError):
            found = None
        if found:
            return found
    return None


# ------------------------------------------------------------------ helpers

def fmt_shape(shape) -> str:
    if shape is None:
        return "an unknown shape"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def fmt_value(a) -> str:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 1:
        return f"{float(a.reshape(-1)[0]):.6g}"
    flat = ", ".join(f"{x:.4g}" for x in a.reshape(-1)[:4])
    return f"array{fmt_shape(a.shape)} starting [{flat}{', ...' if a.size > 4 else ''}]"


def _tensor(ctx: Context, key: str) -> dict:
    value = ctx.got.meta.get(key)
    return value if isinstance(value, dict) else {}


_NUMBER_TYPES = {"float", "int", "bool", "ndarray", "float16", "float32", "float64",
                 "int8", "int16", "int32", "int64", "uint8"}


def _non_numeric_elements(ctx: Context, target: str) -> list[str]:
    """The types of a returned sequence's elements that are not numbers (tensors, None...)."""
    types = _tensor(ctx, target).get("element_types") or []
    return sorted({str(t) for t in types} - _NUMBER_TYPES)


# ------------------------------------------------------------ placeholders

@check("placeholder", required={"target": str, "dtype": str, "shape": list})
def placeholder(ctx: Context) -> Verdict:
    target, info = ctx.spec["target"], _tensor(ctx, ctx.spec["target"])
    want_shape, want_dtype = ctx.spec["shape"], ctx.spec["dtype"]
    if not info.get("is_tensor"):
        return Verdict(False, f"{target} is a {info.get('type', 'missing value')}, not a tensor",
                       f"create {target} with tf.placeholder(tf.{want_dtype}, shape=...)")
    if info.get("op") != "Placeholder":
        return Verdict(False, f"{target} is a {info.get('op')} op, not a placeholder",
                       f"{target} must be fed through the feed dictionary: use tf.placeholder")
    if info.get("dtype") != want_dtype:
        return Verdict(False, f"{target} has dtype {info.get('dtype')}; expected {want_dtype}",
                       f"the data is fed as {want_dtype}: create {target} with tf.{want_dtype}")
    shape = info.get("shape")
    if shape == want_shape:
        return _fed(ctx, target, want_dtype, shape)
    got = f"{target} has shape {fmt_shape(shape)}; expected {fmt_shape(want_shape)}"
    if shape is None:
        hint = f"give {target} a shape: tf.placeholder(tf.{want_dtype}, shape={want_shape})"
    elif len(shape) == len(want_shape) and shape[0] is not None and shape[1:] == want_shape[1:]:
        hint = (f"{target} fixes the batch size to {shape[0]}: use None as the first dimension "
                "so that any number of examples can be fed")
    elif want_shape == [None, 28, 28] and shape == [None, 784]:
        hint = ("the images arrive as 28x28 arrays: keep X [None, 28, 28] and flatten it "
                "inside forward_propagation")
    elif want_shape == [None, 10] and len(shape) == 1:
        hint = "the labels arrive one-hot, one row of 10 per example: Y is [None, 10]"
    else:
        hint = f"the contract fixes the shape of {target}: {fmt_shape(want_shape)}"
    return Verdict(False, got, hint)


def _fed(ctx: Context, target: str, want_dtype: str, shape) -> Verdict:
    """The batch the grader fed through the placeholder came out as the parent computes it."""
    batch, weights = ctx.inputs.get(target), ctx.inputs.get("K" + target)
    if batch is None or weights is None:  # a rubric without a batch to feed
        return Verdict(True, f"{target}: {want_dtype} placeholder of shape {fmt_shape(shape)}")
    got = ctx.got.array("fed_" + target)
    want = float(np.sum(batch.astype(np.float64) * weights.astype(np.float64)))
    if got is None or got.shape not in ((), (1,)) or not close(got.reshape(()), want):
        why = _tensor(ctx, target).get("feed_error", "it did not pass the batch through")
        return Verdict(False, f"{target} could not be fed a batch of shape {batch.shape}: {why}",
                       f"{target} must accept a batch fed through feed_dict={{{target}: ...}}")
    return Verdict(True, f"{target}: {want_dtype} placeholder of shape {fmt_shape(shape)}, "
                         f"fed a batch of {len(batch)}")


# -------------------------------------------------------------- parameters

@check("keys", required={"expected": list})
def keys(ctx: Context) -> Verdict:
    have = [str(k) for k in ctx.got.meta.get("keys", [])]
    missing = [k for k in ctx.spec["expected"] if k not in have]
    if not missing:
        return Verdict(True, "the dict has " + ", ".join(ctx.spec["expected"]))
    lower = {k.lower(): k for k in have}
    near = [f"{lower[m.lower()]!r} for {m!r}" for m in missing if m.lower() in lower]
    hint = (f"keys are case-sensitive: found {', '.join(near)}" if near else
            "return a dict with the keys " + ", ".join(repr(k) for k in ctx.spec["expected"]))
    return Verdict(False, f"missing {', '.join(missing)}; the dict has {have or 'no keys'}", hint)


def _expected_parameter_shapes(n_hidden: int) -> dict:
    return {"W1": [[784, n_hidden]], "b1": [[n_hidden], [1, n_hidden]],
            "W2": [[n_hidden, 10]], "b2": [[10], [1, 10]]}


@check("parameter_shapes")
def parameter_shapes(ctx: Context) -> Verdict:
    n_hidden = ctx.params.get("n_hidden") or 128
    problems, hints = [], []
    for key, allowed in _expected_parameter_shapes(n_hidden).items():
        shape = _tensor(ctx, key).get("shape")
        if shape in allowed:
            continue
        problems.append(f"{key} has shape {fmt_shape(shape)}; expected {fmt_shape(allowed[0])}")
        if shape is not None and len(shape) == 2 and shape[::-1] == allowed[0]:
            hints.append(f"{key} is transposed: with X of shape (m, 784), X @ W1 needs W1 "
                         "of shape (784, n_hidden), and W2 maps n_hidden units to 10 classes")
        elif shape is not None and n_hidden != 128 and 128 in shape:
            hints.append(f"{key} has 128 hidden units although n_hidden={n_hidden} was "
                         "passed: use the n_hidden argument")
    if not problems:
        return Verdict(True, f"W1, b1, W2, b2 have the right shapes for n_hidden={n_hidden}")
    hint = hints[0] if hints else ("W1 maps 784 pixels to n_hidden units, W2 maps n_hidden "
                                   "units to 10 classes; each bias has one entry per unit")
    return Verdict(False, "; ".join(problems), hint)


@check("trainable")
def trainable(ctx: Context) -> Verdict:
    bad = []
    for key in ("W1", "b1", "W2", "b2"):
        info = _tensor(ctx, key)
        if not info.get("is_variable"):
            bad.append(f"{key} is a {info.get('type', 'missing value')}, not a tf.Variable")
        elif not info.get("trainable"):
            bad.append(f"{key} is not trainable")
    if not bad:
        return Verdict(True, "all four parameters are trainable tf.Variables")
    return Verdict(False, "; ".join(bad),
                   "the optimizer only updates trainable variables: create each parameter "
                   "with tf.Variable(...) or tf.get_variable(...)")


@check("init_scale", required={"min_ratio": (int, float), "max_ratio": (int, float)})
def init_scale(ctx: Context) -> Verdict:
    for key in ("W1", "W2"):
        w = ctx.got.array(key)
        if w is None or w.ndim != 2 or w.size == 0:
            return Verdict(False, f"{key} has no value to inspect",
                           "initialize_parameters must return W1 and W2 as variables")
        std = float(w.std())
        if std == 0:
            if float(np.abs(w).max()) == 0:
                return Verdict(False, f"{key} is all zeros",
                               "with zero weights every hidden unit computes the same output and "
                               "gets the same gradient, so the network cannot break symmetry: "
                               "initialize the weights randomly (e.g. tf.glorot_uniform_initializer)")
            return Verdict(False, f"every entry of {key} equals {float(w.flat[0]):.4g}",
                           "identical weights cannot break symmetry between hidden units: "
                           "initialize the weights randomly")
        fan_in, fan_out = w.shape
        glorot = math.sqrt(2.0 / (fan_in + fan_out))
        ratio = math.sqrt(float(np.mean(w.astype(np.float64) ** 2))) / glorot
        if not ctx.spec["min_ratio"] <= ratio <= ctx.spec["max_ratio"]:
            size = "large" if ratio > 1 else "small"
            return Verdict(False,
                           f"{key} has root-mean-square {ratio * glorot:.3g}, {ratio:.3g}x the "
                           f"Glorot scale {glorot:.3g} of a {fan_in}x{fan_out} layer",
                           f"weights this {size} make training slow or unstable: use a "
                           "Glorot/Xavier or He initializer (e.g. tf.glorot_uniform_initializer)")
    return Verdict(True, "W1 and W2 are random at a Glorot-like scale")


# --------------------------------------------------------- values vs reference

def _scalar_like(shape) -> bool:
    return shape is not None and (list(shape) == [] or list(shape) == [1])


@check("output_shape", required={"targets": list}, optional={"expected": str, "dtype": str})
def output_shape(ctx: Context) -> Verdict:
    for target in ctx.spec["targets"]:
        got = ctx.got.array(target)
        if got is None:
            return Verdict(False, f"no value for {target}", f"return {target} as a tensor")
        if ctx.spec.get("expected") == "scalar":
            if not _scalar_like(got.shape):
                hint = (f"{target} has one value per example: average over the batch with "
                        "tf.reduce_mean" if got.ndim == 1 else f"{target} must be a single number")
                return Verdict(False, f"{target} has shape {fmt_shape(got.shape)}; expected a "
                                      "scalar ()", hint)
        else:
            want = ctx.expected.array(target)
            if got.shape != want.shape:
                return Verdict(False, f"{target} has shape {fmt_shape(got.shape)} for "
                                      f"{len(want)} examples; expected {fmt_shape(want.shape)}",
                               f"{target} has one row of 10 class scores per example")
        dtype = ctx.spec.get("dtype")
        got_dtype = _tensor(ctx, target).get("dtype")
        if dtype and got_dtype != dtype:
            diag = run_diagnoses(ctx, "dtype", np.zeros(1, np.int32), np.zeros(1))
            return Verdict(False, f"{target} has dtype {got_dtype}; expected {dtype}",
                           diag or f"cast {target} to {dtype}")
    names = " and ".join(ctx.spec["targets"])
    return Verdict(True, f"{names} {'have' if len(ctx.spec['targets']) > 1 else 'has'} the right shape")


@check("allclose", required={"target": str}, optional={"rtol": (int, float), "atol": (int, float)})
def allclose(ctx: Context) -> Verdict:
    target = ctx.spec["target"]
    got, want = ctx.got.array(target), ctx.expected.array(target)
    rtol = ctx.spec.get("rtol", ctx.tolerances["rtol"])
    atol = ctx.spec.get("atol", ctx.tolerances["atol"])
    if got is None:
        return Verdict(False, f"no value for {target}", f"{target} must be computed")
    g, w = got.astype(np.float64), want.astype(np.float64)
    if g.size == w.size == 1:
        g, w = g.reshape(()), w.reshape(())
    if g.shape != w.shape:
        return Verdict(False, f"{target} has shape {fmt_shape(got.shape)}; "
                              f"expected {fmt_shape(want.shape)}",
                       run_diagnoses(ctx, target, got, want) or f"check the shape of {target}")
    if not np.isfinite(g).all():
        not_numbers = _non_numeric_elements(ctx, target)
        if not_numbers:  # the child turns what float() refuses into NaN
            return Verdict(False, f"{target} holds {', '.join(not_numbers)} values, not numbers",
                           "return the numbers sess.run gives (as Python floats), not tensors")
        return Verdict(False, f"{target} contains NaN or infinity",
                       run_diagnoses(ctx, target, got, want) or
                       "look for a log of 0 or a division by 0: the built-in TensorFlow "
                       "functions are numerically stable")
    if np.allclose(g, w, rtol=rtol, atol=atol):
        return Verdict(True, f"{target} matches the reference")
    diag = run_diagnoses(ctx, target, got, want)
    if diag is None and ctx.spec.get("visibility", "public") == "public":
        diag = ctx.spec.get("hint")  # a hidden check shows the rubric's hint by itself
    return Verdict(False, f"{target}: got {fmt_value(g)}, expected {fmt_value(w)}", diag)


@check("softmax_of", required={"target": str, "logits": str})
def softmax_of(ctx: Context) -> Verdict:
    """The target is the row-wise softmax of the submission's own logits.

    Judged against the submission's logits rather than the reference's, so a
    mistake in the logits is not charged a second time here."""
    target, source = ctx.spec["target"], ctx.spec["logits"]
    got, logits = ctx.got.array(target), ctx.got.array(source)
    if got is None or logits is None:
        missing = target if got is None else source
        return Verdict(False, f"no value for {missing}", f"return {missing} as a tensor")
    g, z = got.astype(np.float64), logits.astype(np.float64)
    if g.shape != z.shape or g.ndim != 2:
        return Verdict(False, f"{target} has shape {fmt_shape(got.shape)} and {source} "
                              f"{fmt_shape(logits.shape)}; expected the same (m, 10)",
                       f"{target} is the softmax of {source}: one row of 10 per example")
    if not np.isfinite(g).all() or not np.isfinite(z).all():
        return Verdict(False, f"{target} or {source} contains NaN or infinity",
                       f"compute {target} with tf.nn.softmax({source})")
    want = _softmax_rows(z)
    if np.allclose(g, want, rtol=ctx.tolerances["rtol"], atol=ctx.tolerances["atol"]):
        return Verdict(True, f"{target} is the softmax of {source}")
    sums = g.sum(axis=1)
    detail = (f"its rows sum to {fmt_value(sums)}" if not np.allclose(sums, 1, atol=1e-3)
              else f"got {fmt_value(g)}, the softmax of {source} is {fmt_value(want)}")
    return Verdict(False, f"{target} is not the softmax of {source}: {detail}",
                   run_diagnoses(ctx, target, got, want) or
                   f"{target} = tf.nn.softmax({source}), normalised over the 10 classes of each row")


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------ the train step
#
# The child runs the student's step on the grader's network and images and
# hands back the parameters after every step.  Everything below recomputes the
# cost from those parameters and the grader's own inputs: what the child
# reports is never taken at its word.

PARAMETER_NAMES = ("W1", "b1", "W2", "b2")


def _mlp_logits(x: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    z1 = x @ p["W1"] + p["b1"].reshape(-1)
    return z1, np.maximum(z1, 0.0) @ p["W2"] + p["b2"].reshape(-1)


def mlp_cost(x: np.ndarray, y: np.ndarray, p: dict) -> float:
    """The mean softmax cross-entropy of LINEAR -> RELU -> LINEAR (float64, NaN-safe)."""
    with np.errstate(all="ignore"):
        _, z = _mlp_logits(x, p)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-(y * log_p).sum(axis=1).mean())


def mlp_gradient(x: np.ndarray, y: np.ndarray, p: dict) -> dict:
    """The gradient of :func:`mlp_cost` with respect to W1, b1, W2, b2."""
    with np.errstate(all="ignore"):
        z1, z = _mlp_logits(x, p)
        a1 = np.maximum(z1, 0.0)
        probs = _softmax_rows(z)
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


@check("lowers_cost", required={"window": int, "min_relative_drop": (int, float),
                                "max_blowup": (int, float)})
def lowers_cost(ctx: Context) -> Verdict:
    """Training with the student's step lowers the assignment's cost.

    Judged over the steps, not step by step: the mean cost of the last
    ``window`` steps must be below the start and below the mean of the first
    ``window`` steps by ``min_relative_drop``, without the cost ever becoming
    NaN or more than ``max_blowup`` times its start (diverging)."""
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
        if _uphill(x, y, start, first_step):
            return Verdict(False, message, _MAXIMIZING)
        return Verdict(False, message + ": training diverged",
                       "each step goes downhill but far too far: the learning rate is too large "
                       "for this network (plain gradient descent needs about 0.1-0.5 here, "
                       "Adam 0.001-0.01): use a smaller rate, e.g. the learning_rate argument")
    window = max(1, min(k, (steps + 1) // 2))
    first, last = float(costs[:window].mean()), float(costs[-window:].mean())
    goal = (1.0 - float(ctx.spec["min_relative_drop"])) * min(first, c0)
    if last <= goal:
        return Verdict(True, f"{what}: the cost went from {c0:.4g} to {float(costs[-1]):.4g} "
                             f"(mean of the first {window} steps {first:.4g}, of the last "
                             f"{window} {last:.4g})")
    message = (f"{what}: the cost went from {c0:.4g} to {float(costs[-1]):.4g} (mean of the "
               f"first {window} steps {first:.4g}, of the last {window} {last:.4g})")
    if all(np.array_equal(traces[key][-1], start[key]) for key in PARAMETER_NAMES):
        return Verdict(False, f"{what}: the parameters never changed",
                       "running the returned operation must update the variables: return "
                       "optimizer.minimize(cost), not the cost or another tensor")
    if _uphill(x, y, start, first_step):
        return Verdict(False, message, _MAXIMIZING)
    return Verdict(False, message + ": the cost did not go down",
                   "each run of the training step should lower the cost: minimize the cost "
                   "you are given, with a learning rate that moves the weights (e.g. Adam "
                   "0.001-0.01, gradient descent 0.1-0.5)")


@check("uses_learning_rate")
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

@check("initialized")
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
            return Verdict(False, f"none of the {total} variables is initialized",
                           "create tf.global_variables_initializer() and run it in the session: "
                           "creating the initializer alone does nothing")
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


# ------------------------------------------------------------ the training loop

@check("batches")
def batches(ctx: Context) -> Verdict:
    recorded = ctx.got.meta.get("batch_sizes", [])
    sizes = [s for s in recorded if isinstance(s, int)] if isinstance(recorded, list) else []
    steps, batch = int(ctx.params["num_steps"]), int(ctx.params["batch_size"])
    ran = ctx.got.meta.get("steps_run")
    if len(sizes) == steps and all(s == batch for s in sizes) and ran == steps:
        # The grader's training step adds up the cost of what it was fed: each step's batch.
        served, _ = _served_costs(ctx)
        fed = ctx.got.array("fed_total")
        if served is not None and fed is not None and fed.size == 1:
            want = float(np.sum(served[:steps]))
            if close(fed, want, rtol=1e-4, atol=1e-4 * float(np.sum(np.abs(served[:steps])))):
                return Verdict(True, f"{steps} steps, each on a fresh batch of {batch}")
        return Verdict(False, f"{steps} batches of {batch} were drawn and the training step ran "
                              f"{steps} times, but not on the batch drawn at each step",
                       "feed each step's batch to the training step: sess.run(train_step, "
                       "feed_dict={X: images, Y: labels}) with the images and labels that "
                       "step drew")
    message = (f"{steps} steps called next_batch {len(sizes)} time(s) with sizes "
               f"{sorted(set(sizes)) or 'none'} and ran the training step {ran} time(s)")
    if len(sizes) in (0, 1) and steps > 1:
        hint = ("every step trained on the same batch (or none): call "
                "mnist.train.next_batch(batch_size) inside the loop")
    elif sizes and all(s != batch for s in sizes):
        hint = f"next_batch was called with {sizes[0]}, not the batch_size argument ({batch})"
    elif len(sizes) == 2 * steps:
        hint = ("next_batch was called twice per step: fetch one batch per step and use it "
                "for the training step and the cost alike")
    elif ran == len(sizes) < steps:
        hint = (f"{steps - len(sizes)} of the {steps} iterations neither drew a batch nor "
                "trained: run the training step on a fresh batch at every step, and measure "
                "on other data after the loop (evaluate does that)")
    elif len(sizes) != steps:
        hint = "run exactly num_steps steps: for i in range(num_steps)"
    else:
        hint = ("run the training step in every iteration: "
                "sess.run([train_step, cost], feed_dict=...)")
    return Verdict(False, message, hint)


@check("returned_costs")
def returned_costs(ctx: Context) -> Verdict:
    info = ctx.got.meta.get("returned", {})
    values = ctx.got.array("returned")
    steps = int(ctx.params["num_steps"])
    if values is None:
        return Verdict(False, f"train() returned {info.get('type', 'nothing')}, not a list",
                       "collect the cost of every step in a list and return it")
    types = set(info.get("element_types", []))
    bad_types = types - {"float", "float32", "float64", "float16"}
    if bad_types:
        return Verdict(False, f"the list holds {', '.join(sorted(bad_types))} values",
                       "append the number sess.run returns for the cost (a float), "
                       "not the tensor itself")
    if len(values) != steps:
        return Verdict(False, f"train() returned {len(values)} costs for {steps} steps",
                       "append exactly one cost per step")
    served, problem = _served_costs(ctx)
    if served is None:
        return Verdict(False, f"{problem}, so the costs cannot be those of the batches",
                       "fetch the cost in the same sess.run as the training step, on that "
                       "step's batch from mnist.train.next_batch")
    if not _costs_of_served_batches(values, served):
        return Verdict(False, "the returned costs are not the costs of the batches fed at each step",
                       "fetch the cost in the same sess.run as the step, on that step's batch")
    # how the batches were drawn is the `batches` check's business, not this one's
    return Verdict(True, f"{steps} costs, one per step, each the cost of a batch fed")


def _costs_of_served_batches(values: np.ndarray, served: np.ndarray) -> bool:
    """Each returned cost is the cost of a batch next_batch served, in the order served:
    step i's batch comes after step i-1's (the same one only if a single batch was drawn)."""
    if len(served) == 1:
        return close(values, np.full(len(values), served[0]), rtol=1e-3, atol=1e-4)
    position = 0
    for value in values:
        while position < len(served) and not close(value, served[position], rtol=1e-3, atol=1e-4):
            position += 1
        if position == len(served):
            return False
        position += 1
    return True


# What the printed check reads of the child's output, at most (the text is the
# child's: never trust its size).
MAX_PRINTED_CHARS = 20_000
MAX_PRINTED_LINES = 2_000
MAX_NUMBERS_PER_LINE = 32
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")


def served_cost_limit(num_steps: int) -> int:
    """The most batches train() may draw: the probe stops it beyond (3 per step, plus 10)."""
    return 3 * num_steps + 10


def _served_costs(ctx: Context) -> tuple[np.ndarray | None, str]:
    """The costs of the batches served, or None and why they are unusable.

    The child reports only the sizes it asked next_batch for; the parent
    replays the grader's ``mnist.train`` (the shared loader's DataSet with
    the child's seed) and computes each batch's cost itself, so nothing the
    child claims about a batch is taken on trust."""
    sizes = ctx.got.meta.get("batch_sizes", [])
    steps = int(ctx.params["num_steps"])
    images, labels = ctx.inputs.get("images"), ctx.inputs.get("labels")
    if images is None or labels is None:
        return None, "the grader has no batches to replay"
    if not isinstance(sizes, list) or not sizes:
        return None, "no mini-batch was drawn"
    if len(sizes) > served_cost_limit(steps):
        return None, (f"the record of the batches served is malformed ({len(sizes)} batches "
                      f"for {steps} steps; at most {served_cost_limit(steps)} can be served)")
    largest = 10 * len(images)
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= largest
               for n in sizes):
        return None, "the record of the batches served is malformed"
    return replay_batch_costs(ctx.inputs, ctx.seed, sizes), ""


def replay_batch_costs(inputs: dict, seed: int, sizes: list[int]) -> np.ndarray:
    """The cost of each batch the Q9 probe's ``mnist.train`` served for ``sizes``, in order."""
    from .data import load_loader
    data = load_loader().DataSet(inputs["images"], inputs["labels"], seed=seed)
    u, v = inputs["u"].astype(np.float64), inputs["v"].astype(np.float64)
    costs = []
    for size in sizes:
        images, labels = data.next_batch(size)
        flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        costs.append(float(np.mean((flat @ u) * (np.asarray(labels) @ v))))
    return np.asarray(costs, dtype=np.float64)


def _token_tolerance(token: str, value: float) -> float:
    """Half a unit in the last printed digit, plus float32 rounding."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    try:
        scale = 10.0 ** (int(exponent or 0) - decimals)
    except OverflowError:
        scale = math.inf
    return 0.5 * scale + 1e-4 * abs(value) + 1e-7


def _cost_candidates(served: np.ndarray, every: int) -> np.ndarray:
    """What a progress line may show as "the cost", sorted: each batch's cost, the mean
    over the last print_every batches, and the running mean since the start."""
    served = served[np.isfinite(served)]
    if served.size == 0:
        return served
    sums = np.concatenate([[0.0], np.cumsum(served)])
    ends = np.arange(1, len(served) + 1)
    running = sums[1:] / ends
    window = min(max(every, 1), len(served))
    recent = (sums[window:] - sums[:-window]) / window
    return np.sort(np.concatenate([served, running, recent]))


def _progress_lines(text: str, steps: int, candidates: np.ndarray) -> tuple[int, int, int]:
    """(progress records, lines with only an iteration, lines with only a cost).

    A progress record is a line that shows an iteration number (an integer
    from 0 to num_steps, whatever its padding or label) and a cost (a number
    within its printed precision of a served batch's cost), or a line with the
    iteration followed by a line with the cost.  Matching is one binary search
    per number: O((n + m) log m)."""
    lines = [line for line in text[:MAX_PRINTED_CHARS].splitlines() if line.strip()]
    lines = lines[:MAX_PRINTED_LINES]
    tokens = [_NUMBER.findall(line)[:MAX_NUMBERS_PER_LINE] for line in lines]
    floats = [(i, t, float(t)) for i, line_tokens in enumerate(tokens) for t in line_tokens
              if any(c in t for c in ".eE")]
    has_cost = np.zeros(len(lines), dtype=bool)
    if floats and candidates.size:
        values = np.array([v for _, _, v in floats])
        tolerance = np.array([_token_tolerance(t, v) for _, t, v in floats])
        finite = np.isfinite(values) & np.isfinite(tolerance)
        low = np.searchsorted(candidates, np.where(finite, values - tolerance, 0.0), side="left")
        found = low < len(candidates)
        nearest = candidates[np.minimum(low, len(candidates) - 1)]
        hit = finite & found & (nearest <= values + tolerance)
        for (i, _, _), ok in zip(floats, hit):
            has_cost[i] |= bool(ok)
    has_iteration = np.array([any(not any(c in t for c in ".eE") and 0 <= int(t) <= steps
                                  for t in line_tokens if len(t.lstrip("+-")) <= 9)
                              for line_tokens in tokens], dtype=bool)
    records = i = 0
    while i < len(lines):
        if has_iteration[i] and has_cost[i]:
            records += 1
        elif has_iteration[i] and i + 1 < len(lines) and has_cost[i + 1] \
                and not has_iteration[i + 1]:
            records += 1
            i += 1
        i += 1
    only_iteration = int(np.sum(has_iteration & ~has_cost))
    only_cost = int(np.sum(has_cost & ~has_iteration))
    return records, only_iteration, only_cost


@check("printed")
def printed(ctx: Context) -> Verdict:
    """train() prints its progress: the iteration number and the cost, about once every
    print_every steps, in any format (0- or 1-based, padded, labelled or not)."""
    text = str(ctx.got.meta.get("printed", ""))[:MAX_PRINTED_CHARS]
    steps, every = int(ctx.params["num_steps"]), int(ctx.params["print_every"])
    if not text.strip():
        return Verdict(False, "train() printed nothing",
                       "print the iteration number and the cost every print_every steps, so "
                       "that you can watch the training progress")
    served, problem = _served_costs(ctx)
    if served is None:
        return Verdict(False, f"the printed cost cannot be checked: {problem}",
                       "draw each step's batch with mnist.train.next_batch(batch_size)")
    records, only_iteration, only_cost = _progress_lines(text, steps, _cost_candidates(served, every))
    expected = math.ceil(steps / max(every, 1))
    low, high = max(1, expected - 1), expected + 2
    if low <= records <= high:
        return Verdict(True, f"{records} progress lines with the iteration and the cost")
    first = next((line for line in text.splitlines() if line.strip()), "")[:60]
    if records == 0:
        if only_iteration and not only_cost:
            return Verdict(False, f"the printed lines show an iteration number but no cost of a "
                                  f"batch fed: {first!r}",
                           "print the cost sess.run returned for the step's batch next to the "
                           "iteration number, e.g. print(f'Iteration {i}: cost = {c:.4f}')")
        if only_cost:
            return Verdict(False, f"the printed lines show the cost but not the iteration "
                                  f"number: {first!r}",
                           "print the iteration number with the cost, e.g. "
                           "print(f'Iteration {i}: cost = {c:.4f}')")
        return Verdict(False, f"no printed line shows the iteration and the cost: {first!r}",
                       "print both every print_every steps, e.g. "
                       "print(f'Iteration {i}: cost = {c:.4f}')")
    return Verdict(False, f"{records} progress lines for {steps} steps with print_every={every}; "
                          f"expected about {expected}",
                   "print once every print_every steps (if i % print_every == 0), not at "
                   "every step nor only once")


# ---------------------------------------------------------------- evaluate

@check("returned_pair")
def returned_pair(ctx: Context) -> Verdict:
    info = ctx.got.meta.get("returned", {})
    values = ctx.got.array("returned")
    if values is None or len(values) != 2:
        count = "" if values is None else f" of {len(values)}"
        return Verdict(False, f"evaluate() returned a {info.get('type', 'nothing')}{count}",
                       "return a pair: (cost_value, accuracy_value)")
    types = set(info.get("element_types", []))
    bad = types - {"float", "float32", "float64"}
    if bad or not np.isfinite(values).all():
        return Verdict(False, f"evaluate() returned {', '.join(sorted(types))} values",
                       "return the numbers sess.run gives, as Python floats")
    return Verdict(True, "evaluate() returns two floats")


# ------------------------------------------------------------------ model

@check("accuracy_threshold", required={"min_accuracy": (int, float)})
def accuracy_threshold(ctx: Context) -> Verdict:
    predictions = ctx.got.array("predictions")
    labels = ctx.secret.get("test_labels")
    threshold = float(ctx.spec["min_accuracy"])
    if predictions is None or labels is None or predictions.shape != labels.shape:
        shape = None if predictions is None else predictions.shape
        return Verdict(False, f"no usable predictions (got shape {fmt_shape(shape)})",
                       "forward_propagation must give one row of logits per test image")
    accuracy = float(np.mean(predictions == labels))
    steps = ctx.params.get("steps")
    if accuracy >= threshold:
        return Verdict(True, f"test accuracy {accuracy:.3f} >= {threshold:.3f} after {steps} steps")
    hint = ("the network did not learn (chance is 0.10): check the initial weights, the cost, "
            "the training step and the loop" if accuracy < 0.2 else
            "the network learns too slowly: check the initial scale of the weights, the "
            "learning rate and the activation")
    return Verdict(False, f"test accuracy {accuracy:.3f} after {steps} steps; "
                          f"the threshold is {threshold:.3f}", hint)


# --------------------------------------------------------------- free text

MAX_ANSWER_CHARS = 20_000
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _normalised(text: str) -> str:
    """Lower case, hyphens and underscores as spaces, one space between words."""
    return " " + " ".join(re.sub(r"[-_/]+", " ", text.lower()).split()) + " "


def improvement_terms(text: str, terms: dict) -> list[str]:
    """The names of the rubric's ``terms`` the text mentions (any of a term's spellings,
    matched at the start of a word: "regulari" finds regularization and regularisation)."""
    haystack = _normalised(text)
    found = []
    for name, spellings in terms.items():
        for spelling in spellings:
            if re.search(r"(?<![a-z0-9])" + re.escape(_normalised(spelling).strip()), haystack):
                found.append(str(name))
                break
    return found


@check("free_text", required={"min_words": int, "mode": str},
       optional={"min_distinct_words": int, "min_terms": int, "terms": dict})
def free_text(ctx: Context) -> Verdict:
    """An answer to the open question: enough words, enough different words, and at
    least ``min_terms`` of the rubric's improvement ``terms``; or left to the
    instructor (``mode: manual``)."""
    if ctx.got.meta.get("text_type") != "str":
        return Verdict(False, f"IMPROVEMENTS is a {ctx.got.meta.get('text_type')}, not a string",
                       "write your answer as a string: IMPROVEMENTS = \"...\"")
    text = str(ctx.got.meta.get("text", ""))[:MAX_ANSWER_CHARS]
    words = _WORD.findall(text.lower())
    distinct = len(set(words))
    needs = ("an answer names at least {terms} concrete changes to this network or its "
             "training (for example the initialization, the learning rate, more epochs, the "
             "batch size, regularization or dropout, a deeper or wider network, convolutional "
             "layers, data augmentation) and says why each would help, in a few sentences "
             "(at least {words} words)")
    min_terms = int(ctx.spec.get("min_terms", 0))
    hint = needs.format(terms=max(min_terms, 1), words=ctx.spec["min_words"])
    if len(words) < ctx.spec["min_words"]:
        return Verdict(False, f"the answer has {len(words)} words; at least "
                              f"{ctx.spec['min_words']} are expected", hint)
    if ctx.spec["mode"] == "manual":
        return Verdict(False, f"{len(words)} words, left for the instructor to grade", pending=True)
    min_distinct = int(ctx.spec.get("min_distinct_words", 0))
    if distinct < min_distinct:
        return Verdict(False, f"the answer repeats itself: {len(words)} words but only "
                              f"{distinct} different ones (at least {min_distinct} expected)",
                       hint)
    found = improvement_terms(text, ctx.spec.get("terms") or {})
    if len(found) < min_terms:
        named = f"names only {', '.join(found)}" if found else "names no improvement"
        return Verdict(False, f"the answer {named}; at least {min_terms} are expected", hint)
    about = f", about {', '.join(found)}" if found else ""
    return Verdict(True, f"an answer of {len(words)} words{about} (completion credit)")


FREE_TEXT_MODES = ("completion", "manual")
