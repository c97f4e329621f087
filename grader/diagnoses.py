"""Named mistakes: recognise a classic error from a wrong value.

A diagnosis is a function registered under a name.  Given the submission's
value, the reference's value and the probe's inputs, it returns a sentence
naming the mistake (and what to try), or ``None`` when the value does not
look like that mistake.  Checks list the diagnoses to try in rubric.yaml.
The sentences describe the mistake, never the expected numbers, so they are
safe to show for hidden checks too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .inputs import linear_costs
from .numerics import log_softmax, softmax


@dataclass(frozen=True)
class Case:
    """What a diagnosis looks at."""

    target: str
    got: np.ndarray
    expected: np.ndarray
    inputs: dict
    params: dict
    outputs: dict = field(default_factory=dict)   # every array the probe returned
    meta: dict = field(default_factory=dict)      # the probe's JSON facts (as declared)


Diagnosis = Callable[[Case], "str | None"]
DIAGNOSES: dict[str, Diagnosis] = {}


def diagnosis(name: str):
    def register(fn: Diagnosis) -> Diagnosis:
        DIAGNOSES[name] = fn
        return fn
    return register


def close(a, b, rtol: float = 1e-3, atol: float = 1e-4) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == b.size == 1:
        a, b = a.reshape(()), b.reshape(())
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def _named(case: Case, candidates, message: str) -> str | None:
    """``message`` if the submission's value is close to one of ``candidates``."""
    return message if any(close(case.got, c) for c in candidates) else None


def _relu(x):
    return np.maximum(x, 0)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ------------------------------------------------------------------ the cost

def _logits_and_labels(case: Case):
    return case.inputs["Z"].astype(np.float64), case.inputs["Y"].astype(np.float64)


def _times_batch(case: Case, message: str) -> str | None:
    """``message`` (formatted with the batch size m) if the value is m times the expected."""
    m = len(case.inputs["Z"])
    return _named(case, [np.asarray(case.expected) * m], message.format(m=m))


@diagnosis("cost_summed")
def cost_summed(case: Case):
    return _times_batch(case, "the cost is {m}x the expected value, and the batch has {m} "
                              "examples: did you sum over the batch instead of averaging "
                              "(tf.reduce_mean)?")


@diagnosis("cost_softmax_twice")
def cost_softmax_twice(case: Case):
    Z, Y = _logits_and_labels(case)
    return _named(case, [np.mean(-(Y * log_softmax(softmax(Z))).sum(1))],
                  "the cost matches a softmax applied twice: the softmax cross-entropy "
                  "applies the softmax itself, so pass it the logits Z2, not softmax(Z2)")


@diagnosis("cost_swapped")
def cost_swapped(case: Case):
    Z, Y = _logits_and_labels(case)
    return _named(case, [np.mean(-(Z * log_softmax(Y)).sum(1))],
                  "the cost matches labels and logits swapped: pass labels=Y and logits=Z2 "
                  "(use the keyword arguments)")


@diagnosis("cost_sigmoid")
def cost_sigmoid(case: Case):
    Z, Y = _logits_and_labels(case)
    per_entry = np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
    return _named(case, [per_entry.mean(), per_entry.sum(1).mean()],
                  "the cost matches a sigmoid cross-entropy: the digits are 10 exclusive "
                  "classes, so use the softmax cross-entropy")


@diagnosis("cost_binary_of_softmax")
def cost_binary_of_softmax(case: Case):
    """-sum over the classes of y log p + (1 - y) log(1 - p), p the (clipped) softmax."""
    Z, Y = _logits_and_labels(case)
    p = np.clip(softmax(Z), 1e-10, 0.9999999)
    per_row = -(Y * np.log(p) + (1 - Y) * np.log(1 - p)).sum(1)
    return _named(case, [per_row.mean(), per_row.mean() / 10],
                  "the cost adds a binary cross-entropy y*log(p) + (1-y)*log(1-p) over the 10 "
                  "classes of the softmax: the digits are one label out of 10, whose cost is the "
                  "softmax cross-entropy -sum(y*log(p)): use "
                  "tf.nn.softmax_cross_entropy_with_logits_v2 on the logits")


@diagnosis("cost_squared_error")
def cost_squared_error(case: Case):
    Z, Y = _logits_and_labels(case)
    candidates = [np.mean((Z - Y) ** 2), np.mean((softmax(Z) - Y) ** 2),
                  np.mean(((softmax(Z) - Y) ** 2).sum(1))]
    return _named(case, candidates, "the cost matches a squared error: for a 10-class "
                                    "classification use the softmax cross-entropy")


@diagnosis("cost_not_averaged")
def cost_not_averaged(case: Case):
    got = np.asarray(case.got, dtype=np.float64)
    m = len(case.inputs["Z"])
    if got.shape == (m,) and close(got.mean(), case.expected):
        return ("the cost holds one cross-entropy per example: average them over the batch "
                "(tf.reduce_mean) to get one number")
    return None


@diagnosis("cost_sum_over_classes_missing")
def cost_sum_over_classes_missing(case: Case):
    return _named(case, [np.asarray(case.expected) / 10],
                  "the cost is a tenth of the expected value: did you average over the 10 "
                  "classes as well as the examples? Sum over the classes, average over the batch")


# -------------------------------------------------------------- the accuracy

@diagnosis("accuracy_cast_to_int")
def accuracy_cast_to_int(case: Case):
    expected = float(np.asarray(case.expected).reshape(-1)[0])
    got = np.asarray(case.got, dtype=np.float64)
    if got.size == 1 and float(got.reshape(-1)[0]) == 0.0 and 0 < expected < 1:
        return ("the accuracy is 0 although some predictions are right: an integer mean "
                "truncates; cast the comparison to float32 before averaging")
    kind = np.asarray(case.got).dtype.kind
    if kind in "iu":
        return ("the accuracy is an integer tensor: cast the boolean comparison to "
                "float32 before tf.reduce_mean, or the mean truncates to 0")
    if kind == "b":
        return ("the accuracy is a boolean tensor: cast the comparison to float32 and "
                "average it with tf.reduce_mean")
    return None


@diagnosis("accuracy_not_float32")
def accuracy_not_float32(case: Case):
    """A float accuracy of another precision (the output_shape check passes the dtype)."""
    got = np.asarray(case.got)
    if case.target == "dtype" and got.dtype.kind == "f" and got.dtype != np.float32:
        return (f"the accuracy is a {got.dtype.name} tensor: the contract asks for float32, "
                "so cast the comparison with tf.cast(correct, tf.float32) (not "
                f"tf.{got.dtype.name})")
    return None


@diagnosis("accuracy_wrong_axis")
def accuracy_wrong_axis(case: Case):
    Z, Y = case.inputs["Z"], case.inputs["Y"]
    return _named(case, [np.mean(np.argmax(Z, 0) == np.argmax(Y, 0))],
                  "the accuracy matches an argmax over axis 0 (across the batch): take the "
                  "argmax over axis 1, the 10 classes of each example")


@diagnosis("accuracy_percent")
def accuracy_percent(case: Case):
    return _named(case, [np.asarray(case.expected) * 100],
                  "the accuracy is a percentage: return a fraction in [0, 1]")


@diagnosis("accuracy_count")
def accuracy_count(case: Case):
    return _times_batch(case, "the accuracy is the number of correct predictions: divide by "
                              "the batch size, i.e. use tf.reduce_mean rather than tf.reduce_sum")


@diagnosis("accuracy_error_rate")
def accuracy_error_rate(case: Case):
    return _named(case, [1 - np.asarray(case.expected)],
                  "the value is the error rate (1 - accuracy): count the rows whose "
                  "predicted class equals the label")


# ------------------------------------------------------ forward propagation

def _forward_parts(case: Case):
    x = case.inputs["X"].reshape(len(case.inputs["X"]), -1).astype(np.float64)
    W1, b1 = case.inputs["W1"].astype(np.float64), case.inputs["b1"].astype(np.float64)
    W2, b2 = case.inputs["W2"].astype(np.float64), case.inputs["b2"].astype(np.float64)
    return x, W1, b1, W2, b2


@diagnosis("forward_swapped_outputs")
def forward_swapped_outputs(case: Case):
    x, W1, b1, W2, b2 = _forward_parts(case)
    logits = _relu(x @ W1 + b1) @ W2 + b2
    other = softmax(logits) if case.target == "Z2" else logits
    return _named(case, [other], "Z2 and A2 are swapped: return (Z2, A2), the logits first, "
                                 "then the probabilities")


@diagnosis("forward_probabilities_as_logits")
def forward_probabilities_as_logits(case: Case):
    got = np.asarray(case.got, dtype=np.float64)
    if got.ndim == 2 and got.shape[1] == 10 and np.allclose(got.sum(1), 1, atol=1e-4) \
            and (got >= 0).all():
        return ("Z2 holds probabilities (each row sums to 1): Z2 must be the logits of the "
                "last linear layer, before the softmax; A2 = softmax(Z2)")
    return None


@diagnosis("forward_missing_relu")
def forward_missing_relu(case: Case):
    x, W1, b1, W2, b2 = _forward_parts(case)
    return _named(case, [(x @ W1 + b1) @ W2 + b2],
                  "Z2 matches a network without the ReLU: apply tf.nn.relu to the first "
                  "linear layer's output (without it the two layers make one linear map, and "
                  "the hidden layer adds nothing)")


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


# The hidden activations recognised, by the name a student reads in TensorFlow.
_ACTIVATIONS = {
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "leaky ReLU": lambda x: np.where(x > 0, x, 0.2 * x),
    "ELU": _elu,
    "SELU": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * _elu(x)),
    "softplus": lambda x: np.logaddexp(0, x),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "swish": lambda x: x * _sigmoid(x),
}
_BIAS_VARIANTS = {"": (True, True), "b1": (False, True), "b2": (True, False),
                  "b1 and b2": (False, False)}


@diagnosis("forward_wrong_activation")
def forward_wrong_activation(case: Case):
    """Another hidden activation than ReLU, named, with or without the biases."""
    x, W1, b1, W2, b2 = _forward_parts(case)
    with np.errstate(all="ignore"):
        for missing, (use_b1, use_b2) in _BIAS_VARIANTS.items():
            z1 = x @ W1 + (b1 if use_b1 else 0)
            for name, fn in _ACTIVATIONS.items():
                if close(case.got, fn(z1) @ W2 + (b2 if use_b2 else 0)):
                    also = (f"; Z2 also leaves out {missing}: add the biases to each linear "
                            "layer" if missing else "")
                    return (f"the hidden layer uses {name}; the tutorial asks for ReLU "
                            f"(LINEAR -> RELU -> LINEAR -> SOFTMAX): apply tf.nn.relu to Z1{also}")
    return None


@diagnosis("forward_missing_bias")
def forward_missing_bias(case: Case):
    x, W1, b1, W2, b2 = _forward_parts(case)
    variants = {"b1": _relu(x @ W1) @ W2 + b2, "b2": _relu(x @ W1 + b1) @ W2,
                "b1 and b2": _relu(x @ W1) @ W2}
    for missing, value in variants.items():
        if close(case.got, value):
            return f"Z2 matches the network without {missing}: add the biases to each linear layer"
    return None


@diagnosis("forward_extra_relu")
def forward_extra_relu(case: Case):
    x, W1, b1, W2, b2 = _forward_parts(case)
    return _named(case, [_relu(_relu(x @ W1 + b1) @ W2 + b2)],
                  "Z2 matches a ReLU applied to the logits too: the second linear layer's "
                  "output goes straight to the softmax")


@diagnosis("probabilities_not_softmax")
def probabilities_not_softmax(case: Case):
    got = np.asarray(case.got, dtype=np.float64)
    logits = case.outputs.get("Z2")
    if logits is None:
        x, W1, b1, W2, b2 = _forward_parts(case)
        logits = _relu(x @ W1 + b1) @ W2 + b2
    logits = np.asarray(logits, dtype=np.float64)
    if got.shape != logits.shape or got.ndim != 2:
        return None
    if close(got, softmax(logits, axis=0)):
        return "A2 is a softmax over axis 0 (the batch): normalise over the 10 classes of each row"
    if not np.allclose(got.sum(1), 1, atol=1e-3):
        return ("the rows of A2 do not sum to 1: A2 must be the softmax of Z2 "
                "(tf.nn.softmax), not a sigmoid or the logits themselves")
    return None


# ----------------------------------------------------------------- evaluate

@diagnosis("evaluate_swapped")
def evaluate_swapped(case: Case):
    got = np.asarray(case.got, dtype=np.float64).reshape(-1)
    if got.size == 2 and close(got[::-1], case.expected):
        return "the pair is in the wrong order: return (cost, accuracy)"
    return None


_BATCH_SIZES = (1, 32, 50, 64, 100, 128, 200, 256)


def _per_example(inputs: dict) -> np.ndarray:
    """(cost, correct) of each example of the ``evaluate`` inputs, shape (n, 2): a slice's or
    a batch's values are the means of its rows (what ``evaluate_values`` computes), so each
    candidate costs a mean, not another pass over the images."""
    images = np.asarray(inputs["images"], dtype=np.float64).reshape(len(inputs["images"]), -1)
    labels = np.asarray(inputs["labels"], dtype=np.float64)
    correct = np.argmax(images @ inputs["R"], 1) == np.argmax(labels, 1)
    return np.stack([linear_costs(inputs, images, labels), correct.astype(np.float64)], axis=1)


# The slices a partial evaluate is recognised by: a batch, or a round share of the test set.
_SLICES = _BATCH_SIZES + (500, 512, 1000, 1024, 1500)


@diagnosis("evaluate_partial")
def evaluate_partial(case: Case):
    rows = _per_example(case.inputs)
    for count in _SLICES:
        if count < len(rows) and close(case.got, rows[:count].mean(axis=0)):
            return (f"the values match the first {count} examples only: evaluate every "
                    "example (when batching, weight each batch by its size)")
    return None


@diagnosis("evaluate_unweighted_batches")
def evaluate_unweighted_batches(case: Case):
    rows = _per_example(case.inputs)
    n = len(rows)
    for size in _BATCH_SIZES[1:]:
        if size >= n or n % size == 0:  # equal batches: the plain mean is right
            continue
        per_batch = [rows[start:start + size].mean(axis=0) for start in range(0, n, size)]
        if close(case.got, np.mean(per_batch, axis=0)):
            return (f"the values match the plain mean of per-batch results over batches of "
                    f"{size}, the last one smaller: weight each batch by its number of examples")
    return None


# -------------------------------------------------------------- the loop

@diagnosis("train_sliced_arrays")
def train_sliced_arrays(case: Case):
    if case.meta.get("batch_sizes") or case.meta.get("arrays_read") is not True:
        return None
    return ("the costs are those of batches sliced from mnist.train.images, not of "
            "mnist.train.next_batch's: draw each step's batch with next_batch(batch_size)")


@diagnosis("train_same_batch")
def train_same_batch(case: Case):
    sizes = case.meta.get("batch_sizes")
    if not isinstance(sizes, list) or len(sizes) != 1 or len(np.asarray(case.got).reshape(-1)) < 2:
        return None
    return ("every cost is of the same batch: next_batch was called once, outside the loop; "
            "call it inside the loop, once per step")
