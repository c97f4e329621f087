"""Check kinds on returned values: placeholders, parameters, and values compared
with the reference's (or recomputed here, like a softmax)."""

from __future__ import annotations

import math

import numpy as np

from .checks_base import (PARAMETER_NAMES, Context, Verdict, _non_numeric_elements, _tensor, check, fmt_shape,
                          fmt_value, has_shape, run_diagnoses)
from .diagnoses import close
from .numerics import softmax


# ------------------------------------------------------------ placeholders

@check("placeholder", required={"target": str, "dtype": str, "shape": list},
       probes=("create_placeholders",), targets={"target": "json"})
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
    got = f"{has_shape(target, shape)}; expected {fmt_shape(want_shape)}"
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

@check("keys", required={"expected": list}, probes=("initialize_parameters",))
def keys(ctx: Context) -> Verdict:
    have = [str(k) for k in ctx.got.meta.get("keys", [])]
    missing = [k for k in ctx.spec["expected"] if k not in have]
    if not missing:
        return Verdict(True, "the dict has " + ", ".join(ctx.spec["expected"]))
    lower = {k.lower(): k for k in have}
    near = [f"{lower[m.lower()]!r} for {m!r}" for m in missing if m.lower() in lower]
    if not near and set(missing) <= set(BIASES) and set(WEIGHTS) <= set(have):
        return Verdict(False, f"no biases: the dict has {', '.join(have)} but no "
                              f"{' and '.join(missing)}",
                       "each linear layer adds a bias: create b1 (shape [n_hidden]) and b2 "
                       "(shape [10]) as tf.Variables (zeros are fine), return them in the dict "
                       "and add them in forward_propagation")
    hint = (f"keys are case-sensitive: found {', '.join(near)}" if near else
            "return a dict with the keys " + ", ".join(repr(k) for k in ctx.spec["expected"]))
    return Verdict(False, f"missing {', '.join(missing)}; the dict has {have or 'no keys'}", hint)


WEIGHTS, BIASES = ("W1", "W2"), ("b1", "b2")


def _present(ctx: Context) -> tuple[list[str], str]:
    """The parameters the dict holds, and a note on those it lacks (the `keys` check's
    business: a missing parameter is reported once, there)."""
    present = [k for k in PARAMETER_NAMES if isinstance(ctx.got.meta.get(k), dict)]
    absent = [k for k in PARAMETER_NAMES if k not in present]
    note = f" ({', '.join(absent)}: missing, see the four parameters)" if absent else ""
    return present, note


def _expected_parameter_shapes(n_hidden: int) -> dict:
    return {"W1": [[784, n_hidden]], "b1": [[n_hidden], [1, n_hidden]],
            "W2": [[n_hidden, 10]], "b2": [[10], [1, 10]]}


@check("parameter_shapes", probes=("initialize_parameters",))
def parameter_shapes(ctx: Context) -> Verdict:
    """The shapes of the parameters the dict holds (a missing one is the `keys` check's)."""
    n_hidden = ctx.params.get("n_hidden") or 128
    present, note = _present(ctx)
    if not present:
        return Verdict(False, "the dict holds none of W1, b1, W2, b2",
                       "return a dict with the keys 'W1', 'b1', 'W2', 'b2'")
    problems, hints = [], []
    expected = _expected_parameter_shapes(n_hidden)
    for key in present:
        allowed, info = expected[key], _tensor(ctx, key)
        shape = info.get("shape")
        if shape in allowed:
            continue
        if not info.get("is_tensor"):
            problems.append(f"{key} is a {info.get('type', 'value')}, not a tensor; expected "
                            f"shape {fmt_shape(allowed[0])}")
            continue
        problems.append(f"{has_shape(key, shape)}; expected {fmt_shape(allowed[0])}")
        if shape is not None and len(shape) == 2 and shape[::-1] == allowed[0]:
            hints.append(f"{key} is transposed: with X of shape (m, 784), X @ W1 needs W1 "
                         "of shape (784, n_hidden), and W2 maps n_hidden units to 10 classes")
        elif shape is not None and n_hidden != 128 and 128 in shape:
            hints.append(f"{key} has 128 hidden units although n_hidden={n_hidden} was "
                         "passed: use the n_hidden argument")
    if not problems:
        return Verdict(True, f"{', '.join(present)} have the right shapes for "
                             f"n_hidden={n_hidden}{note}")
    hint = hints[0] if hints else ("W1 maps 784 pixels to n_hidden units, W2 maps n_hidden "
                                   "units to 10 classes; each bias has one entry per unit")
    return Verdict(False, "; ".join(problems), hint)


@check("trainable", probes=("initialize_parameters",))
def trainable(ctx: Context) -> Verdict:
    """The parameters the dict holds are trainable variables (a missing one is `keys`')."""
    present, note = _present(ctx)
    if not present:
        return Verdict(False, "the dict holds none of W1, b1, W2, b2",
                       "create each parameter with tf.Variable(...) and return them in a dict")
    bad = []
    for key in present:
        info = _tensor(ctx, key)
        if not info.get("is_variable"):
            bad.append(f"{key} is a {info.get('type', 'value')}, not a tf.Variable")
        elif not info.get("trainable"):
            bad.append(f"{key} is not trainable")
    if not bad:
        return Verdict(True, f"{', '.join(present)} are trainable tf.Variables{note}")
    return Verdict(False, "; ".join(bad),
                   "the optimizer only updates trainable variables: create each parameter "
                   "with tf.Variable(...) or tf.get_variable(...)")


@check("init_scale", required={"min_ratio": (int, float), "max_ratio": (int, float)},
       probes=("initialize_parameters",))
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

def _numpy_dtype(name) -> np.dtype:
    """The numpy dtype of a TensorFlow dtype's name; object when numpy has no such dtype."""
    try:
        return np.dtype(str(name))
    except TypeError:
        return np.dtype(object)


def _scalar_like(shape) -> bool:
    return shape is not None and (list(shape) == [] or list(shape) == [1])


@check("output_shape", required={"targets": list}, optional={"expected": str, "dtype": str},
       targets={"targets": "array"}, reference=True)
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
            # the diagnoses see a value of the tensor's dtype: they name it, never guess it
            diag = run_diagnoses(ctx, "dtype", np.zeros(1, _numpy_dtype(got_dtype)), np.zeros(1))
            return Verdict(False, f"{target} has dtype {got_dtype}; expected {dtype}",
                           diag or (f"{target} is a {got_dtype} tensor: cast it to tf.{dtype}" if got_dtype
                                   else f"cast {target} to {dtype}"))
    names = " and ".join(ctx.spec["targets"])
    return Verdict(True, f"{names} {'have' if len(ctx.spec['targets']) > 1 else 'has'} the right shape")


@check("allclose", required={"target": str}, optional={"rtol": (int, float), "atol": (int, float)},
       targets={"target": "array"}, reference=True)
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


@check("softmax_of", required={"target": str, "logits": str},
       targets={"target": "array", "logits": "array"})
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
    want = softmax(z)
    if np.allclose(g, want, rtol=ctx.tolerances["rtol"], atol=ctx.tolerances["atol"]):
        return Verdict(True, f"{target} is the softmax of {source}")
    sums = g.sum(axis=1)
    detail = (f"its rows sum to {fmt_value(sums)}" if not np.allclose(sums, 1, atol=1e-3)
              else f"got {fmt_value(g)}, the softmax of {source} is {fmt_value(want)}")
    return Verdict(False, f"{target} is not the softmax of {source}: {detail}",
                   run_diagnoses(ctx, target, got, want) or
                   f"{target} = tf.nn.softmax({source}), normalised over the 10 classes of each row")


