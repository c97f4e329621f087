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
               "hint": str, "diagnoses": list}


def check(name: str, required: dict | None = None, optional: dict | None = None):
    def register(fn: Callable[[Context], Verdict]):
        CHECKS[name] = CheckKind(name, fn, required or {}, optional or {})
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
    return Verdict(False, f"{target}: got {fmt_value(g)}, expected {fmt_value(w)}",
                   diag or ctx.spec.get("hint"))


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

@check("decreases", required={"target": str, "min_relative_drop": (int, float)})
def decreases(ctx: Context) -> Verdict:
    costs = ctx.got.array(ctx.spec["target"])
    step = _tensor(ctx, "step")
    steps = len(costs) - 1 if costs is not None else 0
    if costs is None or costs.size < 2:
        return Verdict(False, "no costs were recorded", "create_train_step must return an operation")
    if not np.isfinite(costs).all():
        return Verdict(False, "the cost became NaN or infinite while training",
                       "the step diverged: is learning_rate used as given?")
    first, last = float(costs[0]), float(costs[-1])
    drop = (first - last) / max(abs(first), 1e-12)
    if drop >= ctx.spec["min_relative_drop"]:
        return Verdict(True, f"{steps} steps lowered the cost from {first:.4g} to {last:.4g}")
    message = f"after {steps} steps the cost went from {first:.4g} to {last:.4g}"
    if "Optimizer" in step.get("type", ""):
        return Verdict(False, message, f"you returned the optimizer object ({step['type']}): "
                                       "return optimizer.minimize(cost), the operation that "
                                       "performs one step")
    if last > first:
        return Verdict(False, message, "the cost went up: are you maximizing (minimize(-cost)) "
                                       "or using a learning rate other than learning_rate?")
    return Verdict(False, message, "running the returned object does not change the variables: "
                                   "return optimizer.minimize(cost)")


@check("uses_learning_rate")
def uses_learning_rate(ctx: Context) -> Verdict:
    still = ctx.got.array("costs_lr0")
    moving = ctx.got.array("costs")
    if still is None or moving is None:
        return Verdict(False, "no costs were recorded", "create_train_step must return an operation")
    if float(np.abs(moving[-1] - moving[0])) == 0:
        return Verdict(False, "the step does not change the cost at all",
                       "return optimizer.minimize(cost) with the optimizer built from learning_rate")
    if np.isfinite(still).all() and float(np.abs(still[-1] - still[0])) == 0:
        return Verdict(True, "with learning_rate=0 the step leaves the cost unchanged")
    return Verdict(False, "with learning_rate=0 the step still changed the cost "
                          f"({float(still[0]):.4g} -> {float(still[-1]):.4g})",
                   "build the optimizer from the learning_rate argument instead of a fixed value")


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
    sizes = [int(s) for s in ctx.got.meta.get("batch_sizes", [])]
    steps, batch = int(ctx.params["num_steps"]), int(ctx.params["batch_size"])
    ran = ctx.got.meta.get("steps_run")
    if len(sizes) == steps and all(s == batch for s in sizes) and ran == steps:
        return Verdict(True, f"{steps} steps, each on a fresh batch of {batch}")
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
    served = ctx.got.array("batch_costs")
    if served is None or len(served) == 0:
        return Verdict(False, "no mini-batch was drawn, so the costs cannot be those of the batches",
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


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


@check("printed")
def printed(ctx: Context) -> Verdict:
    text = str(ctx.got.meta.get("printed", ""))
    steps, every = int(ctx.params["num_steps"]), int(ctx.params["print_every"])
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return Verdict(False, "train() printed nothing",
                       "print the iteration number and the cost every print_every steps")
    expected = math.ceil(steps / every)
    if not expected - 1 <= len(lines) <= expected + 2:
        return Verdict(False, f"{len(lines)} lines printed for {steps} steps with "
                              f"print_every={every}; expected about {expected}",
                       "print once every print_every steps (i % print_every == 0)")
    costs = ctx.got.array("batch_costs")
    numbers = [float(n) for n in _NUMBER.findall(text)]
    iterations_ok = any(n in (every, 2 * every, 0) for n in numbers)
    costs_ok = costs is not None and any(
        abs(n - c) <= 0.01 * max(1.0, abs(c)) for n in numbers if not n.is_integer()
        for c in costs)
    if iterations_ok and costs_ok:
        return Verdict(True, f"{len(lines)} progress lines with the iteration and the cost")
    missing = "the cost" if iterations_ok else "the iteration number"
    return Verdict(False, f"the progress lines do not show {missing}: {lines[0][:60]!r}",
                   "print both, e.g. print(f'Iteration {i}: cost = {c:.4f}')")


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

@check("free_text", required={"min_words": int, "mode": str})
def free_text(ctx: Context) -> Verdict:
    text = str(ctx.got.meta.get("text", ""))
    words = len(text.split())
    if ctx.got.meta.get("text_type") != "str":
        return Verdict(False, f"IMPROVEMENTS is a {ctx.got.meta.get('text_type')}, not a string",
                       "write your answer as a string: IMPROVEMENTS = \"...\"")
    if words < ctx.spec["min_words"]:
        return Verdict(False, f"the answer has {words} words; at least "
                              f"{ctx.spec['min_words']} are expected",
                       "explain what you would change and why, in a few sentences")
    if ctx.spec["mode"] == "manual":
        return Verdict(False, f"{words} words, left for the instructor to grade", pending=True)
    return Verdict(True, f"an answer of {words} words (completion credit)")


FREE_TEXT_MODES = ("completion", "manual")
