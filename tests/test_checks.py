"""grader/checks.py on recorded probe outputs: pure numpy, no TensorFlow, milliseconds.

The child is hostile: every value it hands back may be forged.  These tests
feed the checks what an honest child would record (computed here in numpy)
and what a forging one could, and require a verdict, never an exception.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from grader.checks import (ADVICE_PREFIX, CHECKS, MAX_PRINTED_CHARS, Context, mlp_cost,
                           mlp_gradient, replay_batch_costs, served_cost_limit)
from grader.inputs import make_inputs, mlp_parameters, one_hot
from grader.outcome import ProbeOutput

TOLERANCES = {"rtol": 1e-4, "atol": 1e-5}
Q7_SPEC = {"name": "lowers", "kind": "lowers_cost", "window": 5, "noise_multiple": 3,
           "min_relative_drop": 1e-5,
           "max_blowup": 10}
KEYS = ("W1", "b1", "W2", "b2")


def run(kind: str, spec: dict, arrays: dict | None = None, meta: dict | None = None,
        inputs: dict | None = None, params: dict | None = None, seed: int = 0):
    ctx = Context(spec={"kind": kind, **spec},
                  got=ProbeOutput(status="ok", meta=meta or {}, arrays=arrays or {}),
                  expected=None, inputs=inputs or {}, params=params or {},
                  tolerances=TOLERANCES, seed=seed)
    return CHECKS[kind].fn(ctx)


# ------------------------------------------------------------------------ Q7

@pytest.fixture(scope="module")
def q7_inputs():
    """Q7's real inputs: MNIST images of the offline subset and Glorot parameters."""
    return make_inputs("create_train_step", 1234, "Q7", {"m": 200, "n_hidden": 32})


def small_inputs(seed: int = 0, m: int = 60, hidden: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    images = (rng.random((m, 28, 28)) < 0.2) * rng.random((m, 28, 28))
    return {"X": images.astype(np.float32), "Y": one_hot(rng.integers(0, 10, m)),
            **mlp_parameters(rng, hidden)}


def simulate(inputs: dict, steps: int, update) -> dict:
    """What an honest child records: the parameters after each of ``steps`` updates."""
    x = inputs["X"].reshape(len(inputs["X"]), -1).astype(np.float64)
    y = inputs["Y"].astype(np.float64)
    p = {k: inputs[k].astype(np.float64) for k in KEYS}
    state: dict = {}
    trace = {k: [] for k in KEYS}
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            g = mlp_gradient(x, y, p)
            p = update(p, g, state, t)
            for k in KEYS:
                trace[k].append(p[k].astype(np.float32))
    return {f"{k}_trace": np.asarray(v) for k, v in trace.items()}


def gd(rate, sign=-1.0):
    return lambda p, g, s, t: {k: p[k] + sign * rate * g[k] for k in KEYS}


def momentum(rate, mu=0.9):
    def update(p, g, s, t):
        for k in KEYS:
            s[k] = mu * s.get(k, 0.0) + g[k]
        return {k: p[k] - rate * s[k] for k in KEYS}
    return update


def adagrad(rate, initial=0.1):
    def update(p, g, s, t):
        for k in KEYS:
            s[k] = s.get(k, initial) + g[k] ** 2
        return {k: p[k] - rate * g[k] / np.sqrt(s[k]) for k in KEYS}
    return update


def adam(rate, b1=0.9, b2=0.999, eps=1e-8, sign=-1.0):
    def update(p, g, s, t):
        out = {}
        for k in KEYS:
            m = s[k + "m"] = b1 * s.get(k + "m", 0.0) + (1 - b1) * g[k]
            v = s[k + "v"] = b2 * s.get(k + "v", 0.0) + (1 - b2) * g[k] ** 2
            step = rate * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            out[k] = p[k] + sign * step * m / (np.sqrt(v) + eps)
        return out
    return update


Q7_PARAMS = {"steps": 40, "learning_rate": 0.01}


@pytest.mark.parametrize("name, update", [
    ("gradient descent 0.5", gd(0.5)), ("gradient descent 0.01", gd(0.01)),
    ("momentum 0.05/0.9", momentum(0.05)), ("adagrad 0.3", adagrad(0.3)),
    ("adam 0.001", adam(0.001)), ("adam 0.01", adam(0.01)),
])
def test_every_reasonable_optimizer_lowers_the_cost(q7_inputs, name, update):
    verdict = run("lowers_cost", Q7_SPEC, simulate(q7_inputs, 40, update), inputs=q7_inputs,
                  params=Q7_PARAMS)
    assert verdict.passed, f"{name}: {verdict.message} | {verdict.diagnosis}"


def test_gradient_descent_at_10_diverges_and_says_so(q7_inputs):
    verdict = run("lowers_cost", Q7_SPEC, simulate(q7_inputs, 40, gd(10.0)), inputs=q7_inputs,
                  params=Q7_PARAMS)
    assert not verdict.passed
    assert "diverged" in verdict.message and "learning rate is too large" in verdict.diagnosis


@pytest.mark.parametrize("update", [adam(0.01, sign=1.0), gd(0.5, sign=1.0), gd(0.01, sign=1.0)])
def test_maximizing_loses_and_is_named(q7_inputs, update):
    verdict = run("lowers_cost", Q7_SPEC, simulate(q7_inputs, 40, update), inputs=q7_inputs,
                  params=Q7_PARAMS)
    assert not verdict.passed
    assert "maximizing" in verdict.diagnosis and "minimize(-cost)" in verdict.diagnosis


def test_a_step_that_changes_nothing_loses():
    inputs = small_inputs()
    trace = {f"{k}_trace": np.repeat(inputs[k][None], 10, axis=0) for k in KEYS}
    verdict = run("lowers_cost", Q7_SPEC, trace, inputs=inputs, params={"steps": 10})
    assert not verdict.passed and "never changed" in verdict.message


def test_the_verdict_is_the_parents_own_cost_not_the_childs_numbers():
    """A forged 'costs' array, or forged cost-like meta, cannot earn Q7."""
    inputs = small_inputs()
    trace = simulate(inputs, 10, gd(0.5, sign=1.0))  # really climbs
    trace["costs"] = np.linspace(2.3, 0.1, 11)          # and claims to descend
    verdict = run("lowers_cost", Q7_SPEC, trace, inputs=inputs, params={"steps": 10},
                  meta={"costs": [2.3, 0.1], "passed": True})
    assert not verdict.passed
    start = {k: inputs[k].astype(np.float64) for k in KEYS}
    x, y = inputs["X"].reshape(60, -1).astype(np.float64), inputs["Y"].astype(np.float64)
    assert f"{mlp_cost(x, y, start):.4g}" in verdict.message


@pytest.mark.parametrize("forge", [
    lambda t: t.pop("W1_trace"),                                        # missing
    lambda t: t.update(W1_trace=t["W1_trace"][:-1]),                    # one step short
    lambda t: t.update(W1_trace=t["W1_trace"].astype(np.int64)),        # not floats
    lambda t: t.update(b2_trace=np.zeros((10, 11), np.float32)),        # wrong shape
    lambda t: t.update(W2_trace=np.zeros((10,), np.float32)),           # wrong rank
    lambda t: t.update(W1_trace=np.full_like(t["W1_trace"], np.nan)),   # NaN
    lambda t: t.update(W1_trace=np.full_like(t["W1_trace"], np.inf)),   # infinite
    lambda t: t.update(W1_trace=np.full_like(t["W1_trace"], 3e38)),     # overflows the cost
])
def test_forged_parameters_fail_cleanly(forge):
    inputs = small_inputs()
    trace = simulate(inputs, 10, gd(0.5))
    forge(trace)
    with np.errstate(all="raise"):  # numpy warnings would be exceptions here
        verdict = run("lowers_cost", Q7_SPEC, trace, inputs=inputs, params={"steps": 10})
    assert not verdict.passed and verdict.message and verdict.diagnosis


def test_uses_learning_rate_is_advice_by_default_and_scored_when_switched_on():
    inputs = small_inputs()
    moved = {f"{k}_lr0": inputs[k] + np.float32(0.01) for k in KEYS}
    still = {f"{k}_lr0": inputs[k].copy() for k in KEYS}
    advice = run("uses_learning_rate", {"advice": True}, moved, inputs=inputs)
    assert advice.passed and advice.advice and advice.message.startswith(ADVICE_PREFIX)
    assert "learning_rate" in advice.diagnosis
    scored = run("uses_learning_rate", {"advice": False}, moved, inputs=inputs)
    assert not scored.passed and not scored.advice
    assert run("uses_learning_rate", {}, still, inputs=inputs).passed
    forged = {**still, "W1_lr0": np.zeros(3, np.float32)}
    assert not run("uses_learning_rate", {}, forged, inputs=inputs).passed


# ------------------------------------------------------------------------ Q9

Q9_PARAMS = {"num_steps": 12, "batch_size": 20, "print_every": 4}
Q9_SEED = 77
Q9_INPUTS = make_inputs("train", 1234, "Q9", {"n": 300})
SIZES = [20] * 12
# What the grader's mnist.train serves for these sizes, as the parent replays it.
SERVED = replay_batch_costs(Q9_INPUTS, Q9_SEED, SIZES)


def printed(text: str, sizes=SIZES, params=Q9_PARAMS):
    meta = {"printed": text} if sizes is None else {"printed": text, "batch_sizes": sizes}
    return run("printed", {}, {}, meta=meta, inputs=Q9_INPUTS, params=params, seed=Q9_SEED)


def lines(fmt, indices, values):
    return "\n".join(fmt(i, v) for i, v in zip(indices, values)) + "\n"


@pytest.mark.parametrize("text", [
    lines(lambda i, c: f"Iteration {i}: cost = {c:.4f}", [0, 4, 8, 11], SERVED[[0, 4, 8, 11]]),
    lines(lambda i, c: f"Step: {i:04d} cost= {c:.9f}", [4, 8, 12], SERVED[[3, 7, 11]]),
    "Training...\n" + lines(lambda i, c: f"Epoch {i}/12 - loss {c:.3e}", [4, 8, 12],
                            SERVED[[3, 7, 11]]) + "Optimization Finished!\n",
    lines(lambda i, c: "step %d, cost %g" % (i, c), [0, 4, 8], SERVED[[0, 4, 8]]),
    lines(lambda i, c: f"Iter {i} | {c}", [1, 5, 9], SERVED[[0, 4, 8]]),
    lines(lambda i, c: f"{i} {c:.5f}", [0, 4, 8], SERVED[[0, 4, 8]]),
    # the cost averaged over the last print_every batches, as the classic examples print it
    lines(lambda i, c: "Epoch: %04d cost= %.9f" % (i, c), [4, 8, 12],
          [SERVED[0:4].mean(), SERVED[4:8].mean(), SERVED[8:12].mean()]),
    # the iteration on one line, the cost on the next
    "".join(f"Iteration {i}\n  cost {SERVED[i]:.4f}\n" for i in (0, 4, 8)),
])
def test_progress_lines_in_any_style_pass(text):
    verdict = printed(text)
    assert verdict.passed, f"{verdict.message} | {verdict.diagnosis}\n{text}"


@pytest.mark.parametrize("text, words", [
    ("", "printed nothing"),
    (lines(lambda i, c: f"{c:.4f}", [0, 4, 8], SERVED[[0, 4, 8]]), "not the iteration"),
    (lines(lambda i, c: f"Iteration {i}", [0, 4, 8], [0, 0, 0]), "no cost"),
    (lines(lambda i, c: f"Iteration {i}: cost = {c + 5:.4f}", [0, 4, 8], SERVED[[0, 4, 8]]),
     "no cost"),
    (lines(lambda i, c: f"Iteration {i}: cost = {c:.4f}", range(12), SERVED), "every step"),
])
def test_progress_lines_that_miss_something_fail_with_what_is_missing(text, words):
    verdict = printed(text)
    assert not verdict.passed
    assert words in verdict.message + " " + (verdict.diagnosis or "")


def test_a_malformed_record_of_batches_fails_with_a_message():
    text = lines(lambda i, c: f"Iteration {i}: cost = {c:.4f}", [0, 4, 8], SERVED[[0, 4, 8]])
    too_many = [20] * (served_cost_limit(12) + 1)
    for sizes in (too_many, [20, "20"], [20, 10**9], [0], [True], [], None):
        verdict = printed(text, sizes=sizes)
        assert not verdict.passed and verdict.message, sizes
    assert "malformed" in printed(text, sizes=too_many).message
    assert "malformed" in printed(text, sizes=[20, 10**9]).message  # never replayed


def test_the_costs_of_the_batches_are_the_parents_not_the_childs():
    """Only the sizes come from the child: a forged record of costs changes nothing."""
    text = lines(lambda i, c: f"Iteration {i}: cost = {c:.4f}", [0, 4, 8], SERVED[[0, 4, 8]])
    forged = lines(lambda i, c: f"Iteration {i}: cost = {c:.4f}", [0, 4, 8], [0.0, 0.0, 0.0])
    assert printed(text).passed
    meta = {"printed": forged, "batch_sizes": SIZES}
    verdict = run("printed", {}, {"batch_costs": np.zeros(12)}, meta=meta, inputs=Q9_INPUTS,
                  params=Q9_PARAMS, seed=Q9_SEED)
    assert not verdict.passed
    returned = {"returned": SERVED[:12].copy()}
    meta = {"batch_sizes": SIZES, "returned": {"type": "list", "element_types": ["float"]}}
    assert run("returned_costs", {}, returned, meta, Q9_INPUTS, Q9_PARAMS, Q9_SEED).passed
    assert not run("returned_costs", {}, {"returned": np.zeros(12)}, meta, Q9_INPUTS, Q9_PARAMS,
                   Q9_SEED).passed
    # the same sizes on another seed are other batches
    assert not run("returned_costs", {}, returned, meta, Q9_INPUTS, Q9_PARAMS, Q9_SEED + 1).passed


def test_each_step_must_train_on_the_batch_it_drew():
    meta = {"batch_sizes": SIZES, "steps_run": 12}
    honest = {"fed_total": np.float64(SERVED.sum())}
    assert run("batches", {}, honest, meta, Q9_INPUTS, Q9_PARAMS, Q9_SEED).passed
    stale = {"fed_total": np.float64(SERVED[0] + SERVED[:11].sum())}  # always the previous batch
    verdict = run("batches", {}, stale, meta, Q9_INPUTS, Q9_PARAMS, Q9_SEED)
    assert not verdict.passed and "not on the batch drawn" in verdict.message
    assert not run("batches", {}, {}, meta, Q9_INPUTS, Q9_PARAMS, Q9_SEED).passed  # nothing fed


def test_the_printed_check_is_bounded_on_hostile_output():
    """A megabyte of numbers and the most batches allowed: only the capped part is read."""
    steps = 2000
    text = ("Iteration 1: cost = 0.123456 " + "1.5 " * 40 + "\n") * 50_000
    verdict = printed(text, sizes=[1] * served_cost_limit(steps),
                      params={"num_steps": steps, "batch_size": 1, "print_every": 1})
    assert not verdict.passed  # at most MAX_PRINTED_CHARS are read: far fewer lines than steps
    assert len(text) > 100 * MAX_PRINTED_CHARS


# ----------------------------------------------------------------------- Q11

TERMS = {"learning rate": ["learning rate"], "dropout": ["dropout", "drop out"],
         "regularization": ["regulari", "weight decay"], "convolution": ["convolution", "cnn"],
         "data augmentation": ["augment"], "initialization": ["initiali", "xavier"]}
Q11 = {"min_words": 25, "mode": "completion", "min_distinct_words": 15, "min_terms": 2,
       "terms": TERMS}
GOOD = ("The test accuracy stalls while the training cost keeps falling, so the network "
        "overfits: dropout on the hidden layer and L2 regularisation would help, and a "
        "convolutional network with data augmentation would use the structure of the images.")


def answer(text, spec=Q11, text_type="str"):
    return run("free_text", spec, meta={"text": text, "text_type": text_type})


def test_only_an_empty_answer_is_unanswered_and_only_the_childs_flag_says_not_implemented():
    from grader.child import output_from_result
    assert answer("").unanswered and not answer("too short").unanswered
    assert not answer(GOOD).unanswered
    flagged = output_from_result({"error": {"message": "f() is not implemented yet",
                                            "unanswered": True}}, {})
    assert flagged.unanswered and not flagged.ok
    for value in ("yes", 1, None):  # anything but true is an answer that failed
        out = output_from_result({"error": {"message": "NotImplementedError", "unanswered": value}},
                                 {})
        assert not out.unanswered, value


def test_a_real_answer_gets_the_credit_and_names_what_it_found():
    verdict = answer(GOOD)
    assert verdict.passed, verdict.message
    assert "dropout" in verdict.message and "regularization" in verdict.message


@pytest.mark.parametrize("text", [
    "lorem " * 25,
    "lorem ipsum dolor sit amet " * 6,
    " ".join(f"word{i}" for i in range(40)),
    ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
     "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
     "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat."),
    "It could be better if we changed some things in the code. " * 3,
])
def test_filler_gets_nothing_and_is_told_what_an_answer_needs(text):
    verdict = answer(text)
    assert not verdict.passed
    assert "names at least 2 concrete changes" in verdict.diagnosis
    assert "at least 25 words" in verdict.diagnosis


def test_spelling_variants_and_manual_mode():
    us = GOOD.replace("regularisation", "regularization").replace("dropout", "drop-out")
    assert answer(us).passed
    assert answer(GOOD, {**Q11, "mode": "manual"}).pending
    assert not answer(None, text_type="NoneType").passed
    plain = {"min_words": 25, "mode": "completion"}  # the old rubric: words only
    assert answer("lorem " * 25, plain).passed


def test_no_check_imports_tensorflow():
    assert "tensorflow" not in sys.modules


def test_the_binary_cross_entropy_of_the_softmax_is_named():
    """The cost of a widely copied tutorial: a per-class binary cross-entropy of the softmax."""
    from grader.diagnoses import DIAGNOSES, Case, log_softmax, softmax
    inputs = make_inputs("compute_cost", 1234, "Q5", {"m": 16})
    z, y = inputs["Z"].astype(np.float64), inputs["Y"].astype(np.float64)
    p = np.clip(softmax(z), 1e-10, 0.9999999)
    got = np.float64(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(1).mean())
    right = np.float64(-(y * log_softmax(z)).sum(1).mean())
    case = Case(target="cost", got=np.asarray(got), expected=np.asarray(right), inputs=inputs,
                params={})
    assert "binary cross-entropy" in DIAGNOSES["cost_binary_of_softmax"](case)
    case = Case(target="cost", got=np.asarray(right), expected=np.asarray(right), inputs=inputs,
                params={})
    assert DIAGNOSES["cost_binary_of_softmax"](case) is None


def test_steps_that_skip_training_are_named():
    meta = {"batch_sizes": [20] * 9, "steps_run": 9}
    verdict = run("batches", {}, meta=meta, inputs=Q9_INPUTS, params=Q9_PARAMS, seed=Q9_SEED)
    assert not verdict.passed and "3 of the 12 iterations neither drew a batch nor trained" \
        in verdict.diagnosis


# ------------------------------------------------ every kind and every diagnosis
#
# One passing and one failing case for each registered check kind, and one case
# each diagnosis names and one it does not: a kind or a diagnosis without an
# entry here fails test_every_kind_and_diagnosis_has_cases.

def verdict(kind, spec=None, arrays=None, meta=None, expected=None, inputs=None, params=None,
            secret=None, seed=0):
    ctx = Context(spec={"kind": kind, **(spec or {})},
                  got=ProbeOutput("ok", meta=meta or {}, arrays=arrays or {}),
                  expected=None if expected is None else ProbeOutput("ok", arrays=expected),
                  inputs=inputs or {}, params=params or {}, tolerances=TOLERANCES,
                  secret=secret or {}, seed=seed)
    return CHECKS[kind].fn(ctx)


def tensor(shape, dtype="float32", op="Placeholder", **more):
    return {"type": "Tensor", "is_tensor": True, "dtype": dtype, "shape": shape, "op": op, **more}


FWD = make_inputs("forward_propagation", 1234, "Q4", {"m": 16, "n_hidden": 24})
COST = make_inputs("compute_cost", 1234, "Q5", {"m": 16})
ACC = make_inputs("compute_accuracy", 1234, "Q6", {"m": 20})
EVAL = make_inputs("evaluate", 1234, "Q10", {"n": 250})
SMALL = small_inputs()


def _logits(inputs=FWD, act=lambda a: np.maximum(a, 0), b1=True, b2=True):
    x = inputs["X"].reshape(len(inputs["X"]), -1).astype(np.float64)
    w = {k: inputs[k].astype(np.float64) for k in KEYS}
    return act(x @ w["W1"] + (w["b1"] if b1 else 0)) @ w["W2"] + (w["b2"] if b2 else 0)


def _right_cost(z=None):
    from grader.numerics import log_softmax
    z = COST["Z"].astype(np.float64) if z is None else z
    return float(np.mean(-(COST["Y"] * log_softmax(z)).sum(1)))


def _accuracy():
    return float(np.mean(np.argmax(ACC["Z"], 1) == np.argmax(ACC["Y"], 1)))


def _params_meta(shapes=None, **info):
    shapes = shapes or {"W1": [784, 128], "b1": [128], "W2": [128, 10], "b2": [10]}
    return {k: {"type": "RefVariable", "is_tensor": True, "is_variable": True, "trainable": True,
                "shape": shapes[k], **info} for k in KEYS}


def _session(uninitialized=(), a=np.ones(3)):
    meta = {"is_session": True, "same_graph": True, "uninitialized": list(uninitialized),
            "n_variables": 4, "session": {"type": "Session", "is_tensor": False}}
    return verdict("initialized", {}, {"a": a}, meta, expected={"a": np.ones(3)})


def _pair(types, values):
    return verdict("returned_pair", {}, {"returned": np.asarray(values, dtype=np.float64)},
                   {"returned": {"type": "tuple", "element_types": types}})


def _threshold(permute, transposed=False):
    """Images whose digit is the brightest of their first 10 pixels, and a 784 -> 10 -> 10
    network that reads those pixels through ``permute`` (the identity reads them right)."""
    labels = np.arange(50) % 10
    images = np.zeros((50, 28, 28), np.uint8)
    images.reshape(50, -1)[np.arange(50), labels] = 255
    W1 = np.zeros((784, 10), np.float32)
    W1[np.arange(10), np.arange(10)] = 1.0
    trained = {"W1": W1, "b1": np.zeros(10, np.float32), "W2": permute(np.eye(10, dtype=np.float32)),
               "b2": np.zeros((1, 10), np.float32)}
    if transposed:  # kept as (n, 784) and (10, n), transposed in the products: as good
        trained["W1"] = np.ascontiguousarray(np.pad(W1, ((0, 0), (0, 2))).T)
        trained["W2"], trained["b1"] = np.pad(trained["W2"], ((0, 2), (0, 0))).T, np.zeros(12)
    return verdict("accuracy_threshold", {"min_accuracy": 0.8}, trained,
                   secret={"test_images": images, "test_labels": labels}, params={"steps": 100})


def test_the_model_is_read_with_its_weights_either_way_round():
    """W1 kept as (n, 784) and W2 as (10, n), transposed in the products, is consistent."""
    assert _threshold(lambda w: w, transposed=True).passed
    assert not _threshold(lambda w: np.roll(w, 1, axis=1), transposed=True).passed


Q9_META = {"batch_sizes": SIZES, "steps_run": 12,
           "returned": {"type": "list", "element_types": ["float"]}}
GOOD_PRINT = lines(lambda i, c: f"Iteration {i}: cost = {c:.4f}", [0, 4, 8, 11], SERVED[[0, 4, 8, 11]])
Z2 = _logits()
SOFT = np.exp(Z2 - Z2.max(1, keepdims=True))
SOFT = SOFT / SOFT.sum(1, keepdims=True)
GLOROT = mlp_parameters(np.random.default_rng(0), 128)

CHECK_CASES = {
    "placeholder": (
        lambda: verdict("placeholder", {"target": "X", "dtype": "float32", "shape": [None, 28, 28]},
                        meta={"X": tensor([None, 28, 28])}),
        lambda: verdict("placeholder", {"target": "X", "dtype": "float32", "shape": [None, 28, 28]},
                        meta={"X": tensor([None, 784])})),
    "keys": (
        lambda: verdict("keys", {"expected": list(KEYS)}, meta={"keys": list(KEYS)}),
        lambda: verdict("keys", {"expected": list(KEYS)}, meta={"keys": ["w1", "b1", "w2", "b2"]})),
    "parameter_shapes": (
        lambda: verdict("parameter_shapes", meta=_params_meta()),
        lambda: verdict("parameter_shapes", meta=_params_meta(
            {"W1": [128, 784], "b1": [128], "W2": [128, 10], "b2": [10]}))),
    "trainable": (
        lambda: verdict("trainable", meta=_params_meta()),
        lambda: verdict("trainable", meta=_params_meta(trainable=False))),
    "init_scale": (
        lambda: verdict("init_scale", {"min_ratio": 0.25, "max_ratio": 4}, GLOROT),
        lambda: verdict("init_scale", {"min_ratio": 0.25, "max_ratio": 4},
                        {k: np.zeros_like(v) for k, v in GLOROT.items()})),
    "output_shape": (
        lambda: verdict("output_shape", {"targets": ["Z2"]}, {"Z2": Z2}, expected={"Z2": Z2}),
        lambda: verdict("output_shape", {"targets": ["Z2"]}, {"Z2": Z2.T}, expected={"Z2": Z2})),
    "allclose": (
        lambda: verdict("allclose", {"target": "cost"}, {"cost": np.float64(_right_cost())},
                        expected={"cost": np.float64(_right_cost())}, inputs=COST),
        lambda: verdict("allclose", {"target": "cost"}, {"cost": np.float64(1.0)},
                        expected={"cost": np.float64(_right_cost())}, inputs=COST)),
    "softmax_of": (
        lambda: verdict("softmax_of", {"target": "A2", "logits": "Z2"}, {"Z2": Z2, "A2": SOFT}),
        lambda: verdict("softmax_of", {"target": "A2", "logits": "Z2"}, {"Z2": Z2, "A2": Z2})),
    "lowers_cost": (
        lambda: verdict("lowers_cost", Q7_SPEC, simulate(SMALL, 40, gd(0.5)), inputs=SMALL,
                        params=Q7_PARAMS),
        lambda: verdict("lowers_cost", Q7_SPEC, simulate(SMALL, 40, gd(0.5, sign=1.0)),
                        inputs=SMALL, params=Q7_PARAMS)),
    "uses_learning_rate": (
        lambda: verdict("uses_learning_rate", {}, {f"{k}_lr0": SMALL[k] for k in KEYS},
                        inputs=SMALL),
        lambda: verdict("uses_learning_rate", {}, {f"{k}_lr0": SMALL[k] + 1 for k in KEYS},
                        inputs=SMALL)),
    "initialized": (lambda: _session(), lambda: _session(["grader_a", "grader_b", "c", "d"])),
    "batches": (
        lambda: verdict("batches", {}, {"fed_total": np.float64(SERVED.sum())}, Q9_META,
                        inputs=Q9_INPUTS, params=Q9_PARAMS, seed=Q9_SEED),
        lambda: verdict("batches", {}, {"fed_total": np.float64(0.0)}, Q9_META,
                        inputs=Q9_INPUTS, params=Q9_PARAMS, seed=Q9_SEED)),
    "returned_costs": (
        lambda: verdict("returned_costs", {}, {"returned": SERVED.copy()}, Q9_META,
                        inputs=Q9_INPUTS, params=Q9_PARAMS, seed=Q9_SEED),
        lambda: verdict("returned_costs", {}, {"returned": SERVED[:5].copy()}, Q9_META,
                        inputs=Q9_INPUTS, params=Q9_PARAMS, seed=Q9_SEED)),
    "printed": (lambda: printed(GOOD_PRINT), lambda: printed("")),
    "returned_pair": (lambda: _pair(["float", "float"], [1.5, 0.5]),
                      lambda: _pair(["Tensor", "Tensor"], [np.nan, np.nan])),
    "accuracy_threshold": (lambda: _threshold(lambda w: w),
                           lambda: _threshold(lambda w: np.roll(w, 1, axis=1))),
    "free_text": (lambda: answer(GOOD), lambda: answer("")),
}


def diagnose(name, got, expected, inputs, target="cost", outputs=None):
    from grader.diagnoses import DIAGNOSES, Case
    return DIAGNOSES[name](Case(target=target, got=np.asarray(got), expected=np.asarray(expected),
                                inputs=inputs, params={}, outputs=outputs or {}))


def _cost_case(name, wrong):
    def named(got):
        return lambda: diagnose(name, got() if callable(got) else got, _right_cost(), COST)
    return named(wrong), named(_right_cost)


def _acc_case(name, wrong, target="accuracy"):
    return (lambda: diagnose(name, wrong(), _accuracy(), ACC, target),
            lambda: diagnose(name, np.float64(_accuracy()), _accuracy(), ACC, target))


def _fwd_case(name, wrong, target="Z2", right=Z2, outputs=None):
    return (lambda: diagnose(name, wrong(), right, FWD, target, outputs),
            lambda: diagnose(name, right, right, FWD, target, outputs))


def _eval_case(name, wrong):
    from grader.inputs import evaluate_values
    right = np.asarray(evaluate_values(EVAL))
    return (lambda: diagnose(name, wrong(right), right, EVAL, "returned"),
            lambda: diagnose(name, right + [1.0, 0.3], right, EVAL, "returned"))  # another mistake


def _softmax_np(z, axis=1):
    from grader.numerics import softmax
    return softmax(z, axis)


def _unweighted(right):
    from grader.inputs import evaluate_values
    sub = lambda s: {**EVAL, "images": EVAL["images"][s:s + 32], "labels": EVAL["labels"][s:s + 32]}
    return np.mean([evaluate_values(sub(s)) for s in range(0, 250, 32)], axis=0)


_Z, _Y = COST["Z"].astype(np.float64), COST["Y"].astype(np.float64)
DIAGNOSIS_CASES = {
    "cost_summed": _cost_case("cost_summed", lambda: _right_cost() * 16),
    "cost_softmax_twice": _cost_case("cost_softmax_twice",
                                     lambda: _right_cost(np.log(_softmax_np(_softmax_np(_Z))))),
    "cost_swapped": _cost_case("cost_swapped", lambda: float(np.mean(
        -(_Z * (_Y - _Y.max(1, keepdims=True) - np.log(np.exp(_Y - _Y.max(1, keepdims=True))
                                                       .sum(1, keepdims=True)))).sum(1)))),
    "cost_sigmoid": _cost_case("cost_sigmoid", lambda: float(np.mean(
        np.maximum(_Z, 0) - _Z * _Y + np.log1p(np.exp(-np.abs(_Z)))))),
    "cost_binary_of_softmax": _cost_case("cost_binary_of_softmax", lambda: float(np.mean(-(
        _Y * np.log(np.clip(_softmax_np(_Z), 1e-10, 0.9999999))
        + (1 - _Y) * np.log(1 - np.clip(_softmax_np(_Z), 1e-10, 0.9999999))).sum(1)))),
    "cost_squared_error": _cost_case("cost_squared_error", lambda: float(np.mean((_Z - _Y) ** 2))),
    "cost_not_averaged": _cost_case("cost_not_averaged", lambda: -(_Y * np.log(_softmax_np(_Z))).sum(1)),
    "cost_sum_over_classes_missing": _cost_case("cost_sum_over_classes_missing",
                                                lambda: _right_cost() / 10),
    "accuracy_cast_to_int": _acc_case("accuracy_cast_to_int", lambda: np.float64(0.0)),
    "accuracy_wrong_axis": _acc_case("accuracy_wrong_axis", lambda: np.float64(
        np.mean(np.argmax(ACC["Z"], 0) == np.argmax(ACC["Y"], 0)))),
    "accuracy_percent": _acc_case("accuracy_percent", lambda: np.float64(_accuracy() * 100)),
    "accuracy_count": _acc_case("accuracy_count", lambda: np.float64(_accuracy() * 20)),
    "accuracy_error_rate": _acc_case("accuracy_error_rate", lambda: np.float64(1 - _accuracy())),
    "forward_swapped_outputs": _fwd_case("forward_swapped_outputs", lambda: _softmax_np(Z2)),
    "forward_probabilities_as_logits": _fwd_case("forward_probabilities_as_logits",
                                                 lambda: _softmax_np(Z2)),
    "forward_missing_relu": _fwd_case("forward_missing_relu", lambda: _logits(act=lambda a: a)),
    "forward_wrong_activation": _fwd_case("forward_wrong_activation",
                                          lambda: _logits(act=np.tanh)),
    "forward_missing_bias": _fwd_case("forward_missing_bias", lambda: _logits(b1=False)),
    "forward_extra_relu": _fwd_case("forward_extra_relu", lambda: np.maximum(Z2, 0)),
    "probabilities_not_softmax": _fwd_case("probabilities_not_softmax",
                                           lambda: _softmax_np(Z2, axis=0), "A2", SOFT,
                                           {"Z2": Z2}),
    "evaluate_swapped": _eval_case("evaluate_swapped", lambda right: right[::-1]),
    "evaluate_partial": _eval_case("evaluate_partial", lambda right: np.asarray(
        __import__("grader.inputs", fromlist=["x"]).evaluate_values(EVAL, 100))),
    "evaluate_unweighted_batches": _eval_case("evaluate_unweighted_batches",
                                              lambda right: _unweighted(right)),
}


def _meta_case(name, meta, got=np.ones(12), target="returned"):
    from grader.diagnoses import DIAGNOSES, Case
    return lambda: DIAGNOSES[name](Case(target=target, got=np.asarray(got), expected=np.ones(12),
                                        inputs=Q9_INPUTS, params={}, meta=meta))


DIAGNOSIS_CASES.update({
    "accuracy_not_float32": (
        lambda: diagnose("accuracy_not_float32", np.zeros(1, np.float64), np.zeros(1), ACC, "dtype"),
        lambda: diagnose("accuracy_not_float32", np.zeros(1, np.int32), np.zeros(1), ACC, "dtype")),
    "train_sliced_arrays": (_meta_case("train_sliced_arrays", {"batch_sizes": [], "arrays_read": True}),
                            _meta_case("train_sliced_arrays", {"batch_sizes": SIZES,
                                                               "arrays_read": True})),
    "train_same_batch": (_meta_case("train_same_batch", {"batch_sizes": [20]}),
                         _meta_case("train_same_batch", {"batch_sizes": SIZES})),
})


def test_every_kind_and_diagnosis_has_cases():
    from grader.diagnoses import DIAGNOSES
    assert set(CHECK_CASES) == set(CHECKS), set(CHECKS) ^ set(CHECK_CASES)
    assert set(DIAGNOSIS_CASES) == set(DIAGNOSES), set(DIAGNOSES) ^ set(DIAGNOSIS_CASES)


@pytest.mark.parametrize("kind", sorted(CHECK_CASES))
def test_each_check_kind_passes_and_fails(kind):
    passing, failing = CHECK_CASES[kind]
    good, bad = passing(), failing()
    assert good.passed and not good.pending, f"{kind}: {good.message} | {good.diagnosis}"
    assert not bad.passed and bad.message, kind


@pytest.mark.parametrize("name", sorted(DIAGNOSIS_CASES))
def test_each_diagnosis_names_its_mistake_and_only_it(name):
    named, other = DIAGNOSIS_CASES[name]
    assert named(), name
    assert other() is None, name


# ------------------------------------------------- feedback that names the cause

def rmsprop(rate, decay=0.9, eps=1e-10):
    """TensorFlow 1's RMSProp: the mean square starts at 1."""
    def update(p, g, s, t):
        for k in KEYS:
            s[k] = decay * s.get(k, 1.0) + (1 - decay) * g[k] ** 2
        return {k: p[k] - rate * g[k] / np.sqrt(s[k] + eps) for k in KEYS}
    return update


def _q7_costs(inputs, trace, steps):
    x = inputs["X"].reshape(len(inputs["X"]), -1).astype(np.float64)
    y = inputs["Y"].astype(np.float64)
    start = {k: inputs[k].astype(np.float64) for k in KEYS}
    return np.array([mlp_cost(x, y, start)] + [
        mlp_cost(x, y, {k: trace[f"{k}_trace"][s].astype(np.float64) for k in KEYS})
        for s in range(steps)])


@pytest.mark.parametrize("update", [rmsprop(1e-5), gd(0.0005), gd(0.0002)])
def test_a_slow_steady_descent_lowers_the_cost(q7_inputs, update):
    """A step that lowers the cost by less than 1% in 40 steps still lowers it."""
    trace = simulate(q7_inputs, 40, update)
    costs = _q7_costs(q7_inputs, trace, 40)
    assert costs[-5:].mean() > 0.99 * costs[0]  # what a fixed 1% drop would have failed
    verdict = run("lowers_cost", Q7_SPEC, trace, inputs=q7_inputs, params=Q7_PARAMS)
    assert verdict.passed, f"{verdict.message} | {verdict.diagnosis}"


def _between(inputs, end, alphas):
    """Parameters at start + alpha * (end - start) for each alpha: a chosen cost curve."""
    return {f"{k}_trace": np.asarray([inputs[k] + a * (end[k] - inputs[k]) for a in alphas],
                                     dtype=np.float32) for k in KEYS}


def test_a_cost_that_jumps_as_much_as_it_falls_is_not_a_descent_and_is_not_called_flat():
    inputs = small_inputs()
    end = {k: v[-1] for k, v in
           ((k, simulate(inputs, 10, gd(0.5))[f"{k}_trace"]) for k in KEYS)}
    # the cost jumps between the start and a trained point, a little lower at the end
    alphas = [1.0 if s % 2 == 0 else 0.0 for s in range(35)] + [1, 0, 1, 0, 1]
    verdict = run("lowers_cost", Q7_SPEC, _between(inputs, end, alphas), inputs=inputs,
                  params={"steps": 40})
    assert not verdict.passed
    assert "did not go down" not in verdict.message
    assert "step-to-step spread" in verdict.message and "smaller learning rate" in verdict.diagnosis
    # back above the start at the end: that one did not go down, and says so
    flat = run("lowers_cost", Q7_SPEC, _between(inputs, end, [1.0] * 5 + [-0.05] * 35),
               inputs=inputs, params={"steps": 40})
    assert not flat.passed and "did not go down" in flat.message
    # down at once, then most of the way back up: said as such
    undone = run("lowers_cost", Q7_SPEC, _between(inputs, end, [1.0] * 5 + [0.2] * 35),
                 inputs=inputs, params={"steps": 40})
    assert not undone.passed and "fell in the first steps, then rose again" in undone.message


def test_no_initializer_is_told_from_an_initializer_not_run():
    meta = {"is_session": True, "same_graph": True, "uninitialized": ["a", "b", "c", "d"],
            "n_variables": 4, "session": {"type": "Session", "is_tensor": False}}
    none = verdict("initialized", {}, {}, {**meta, "initializer_created": False},
                   expected={"a": np.ones(3)})
    assert not none.passed and "no initializer was created" in none.message
    assert "alone does nothing" not in none.diagnosis
    idle = verdict("initialized", {}, {}, {**meta, "initializer_created": True},
                   expected={"a": np.ones(3)})
    assert not idle.passed and "created but never run" in idle.message
    assert "alone does nothing" in idle.diagnosis


@pytest.mark.parametrize("dtype, words, not_words", [
    ("float64", "float64", "integer"), ("int32", "integer tensor", "float64"),
    ("float16", "float16", "integer")])
def test_the_accuracy_dtype_is_named(dtype, words, not_words):
    spec = {"targets": ["accuracy"], "expected": "scalar", "dtype": "float32",
            "diagnoses": ["accuracy_cast_to_int", "accuracy_not_float32"]}
    got = verdict("output_shape", spec, {"accuracy": np.float64(0.5)},
                  meta={"accuracy": tensor([], dtype=dtype, op="Mean")})
    assert not got.passed and words in got.diagnosis and not_words not in got.diagnosis


def test_missing_biases_are_one_message_and_cost_only_the_keys_check():
    meta = {"keys": ["W1", "W2"], **{k: v for k, v in _params_meta().items() if k[0] == "W"}}
    keys = verdict("keys", {"expected": list(KEYS)}, meta=meta)
    assert not keys.passed and keys.message.startswith("no biases")
    for kind in ("parameter_shapes", "trainable"):
        got = verdict(kind, meta=meta)
        assert got.passed and "b1, b2: missing" in got.message, (kind, got.message)
    empty = {"keys": []}
    for kind in ("parameter_shapes", "trainable"):
        assert not verdict(kind, meta=empty).passed
    unknown = _params_meta()
    unknown["b1"] = {**unknown["b1"], "shape": None}
    shapes = verdict("parameter_shapes", meta=unknown)
    assert not shapes.passed and "b1 has no static shape" in shapes.message
    assert "unknown shape" not in shapes.message
    listed = _params_meta()
    listed["b2"] = {"type": "list", "is_tensor": False}
    assert "b2 is a list, not a tensor" in verdict("parameter_shapes", meta=listed).message


@pytest.mark.parametrize("act, name, missing", [
    (lambda a: 1 / (1 + np.exp(-a)), "sigmoid", "b1 and b2"), (np.tanh, "tanh", ""),
    (lambda a: np.where(a > 0, a, 0.2 * a), "leaky ReLU", "b2")])
def test_the_hidden_activation_is_named_with_or_without_biases(act, name, missing):
    got = _logits(act=act, b1="b1" not in missing, b2="b2" not in missing)
    found = diagnose("forward_wrong_activation", got, Z2, FWD, "Z2")
    assert f"the hidden layer uses {name}; the tutorial asks for ReLU" in found
    assert (f"leaves out {missing}" in found) == bool(missing)


def _offset_loop(steps=12, size=20, n=300):
    """A loop that slices the arrays itself (Udacity style): the batches and their costs."""
    from grader.inputs import window_costs
    costs = window_costs(Q9_INPUTS, size)
    offsets = [(i * size) % (n - size) for i in range(steps)]
    return costs[offsets]


def test_slicing_the_arrays_is_named_once_and_the_costs_and_prints_still_count():
    costs = _offset_loop()
    meta = {"batch_sizes": [], "arrays_read": True, "steps_run": 12,
            "returned": {"type": "list", "element_types": ["float"]}}
    batches = run("batches", {}, {"fed_total": np.float64(costs.sum())}, meta, Q9_INPUTS,
                  Q9_PARAMS, Q9_SEED)
    assert not batches.passed and "never called mnist.train.next_batch" in batches.message
    assert "slicing the arrays yourself" in batches.message
    returned = run("returned_costs", {}, {"returned": costs}, meta, Q9_INPUTS, Q9_PARAMS,
                   Q9_SEED)
    assert returned.passed, returned.message
    assert not run("returned_costs", {}, {"returned": costs + 1}, meta, Q9_INPUTS, Q9_PARAMS,
                   Q9_SEED).passed
    text = lines(lambda i, c: f"Minibatch loss at step {i}: {c:.6f}", [0, 4, 8], costs[[0, 4, 8]])
    shown = run("printed", {}, {}, {**meta, "printed": text}, Q9_INPUTS, Q9_PARAMS, Q9_SEED)
    assert shown.passed, shown.message
    # no batch drawn and no array read: neither is "the same batch"
    idle = run("batches", {}, {}, {"batch_sizes": [], "steps_run": 12}, Q9_INPUTS, Q9_PARAMS,
               Q9_SEED)
    assert "never drew a batch" in idle.diagnosis and "same batch" not in idle.diagnosis


def test_one_batch_for_every_step_is_named_the_same_batch():
    meta = {"batch_sizes": [20], "steps_run": 12}
    got = run("batches", {}, {}, meta, Q9_INPUTS, Q9_PARAMS, Q9_SEED)
    assert "every step trained on the same batch" in got.diagnosis and "or none" not in got.diagnosis


@pytest.mark.parametrize("drawn, words", [(1, "called mnist.train.next_batch once"),
                                          (0, "drew no batch")])
def test_a_frozen_batch_is_named_by_the_model_item(drawn, words):
    labels = np.arange(50) % 10
    images = np.zeros((50, 28, 28), np.uint8)
    images.reshape(50, -1)[np.arange(50), labels] = 255
    W1 = np.zeros((784, 10), np.float32)
    W1[np.arange(10), np.arange(10)] = 1.0
    W2 = np.eye(10, dtype=np.float32)
    W2[:, [8, 9]] = W2[:, [9, 8]]          # digits 8 and 9 swapped: 0.8 < 0.9
    trained = {"W1": W1, "b1": np.zeros(10, np.float32), "W2": W2,
               "b2": np.zeros((1, 10), np.float32)}
    spec = {"min_accuracy": 0.9}
    secret = {"test_images": images, "test_labels": labels}
    frozen = verdict("accuracy_threshold", spec, trained, meta={"batches_drawn": drawn},
                     secret=secret, params={"steps": 100})
    assert not frozen.passed and words in frozen.diagnosis
    assert "learns too slowly" not in frozen.diagnosis
    fresh = verdict("accuracy_threshold", spec, trained, meta={"batches_drawn": 100},
                    secret=secret, params={"steps": 100})
    assert not fresh.passed and "learns too slowly" in fresh.diagnosis


def test_evaluating_a_slice_of_a_large_set_is_named():
    from grader.inputs import evaluate_values
    large = make_inputs("evaluate", 1234, "Q10", {"n": 1999})
    found = diagnose("evaluate_partial", np.asarray(evaluate_values(large, 1000)),
                     np.asarray(evaluate_values(large)), large, "returned")
    assert "first 1000 examples" in found
