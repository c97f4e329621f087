"""The inputs each probe is called with, generated from the rubric's seeds.

Every function here is pure numpy: the same (seed, item, params) always gives
the same arrays, so the reference and the submission are probed on identical
inputs and a grade can be reproduced.  Public inputs come from the rubric's
``public_seed``; hidden ones from a 256-bit seed that ``plan.py`` derives
from the grading key and the rubric's ``seed`` (``keys.py``).
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

Inputs = dict[str, np.ndarray]
_GENERATORS: dict[str, Callable[[np.random.Generator, dict], Inputs]] = {}


def _generator(probe: str):
    def register(fn):
        _GENERATORS[probe] = fn
        return fn
    return register


def rng_for(seed: int, item_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(item_id.encode())])


def make_inputs(probe: str, seed: int, item_id: str, params: dict) -> Inputs:
    """The arrays the probe of ``item_id`` is run on (empty when it needs none)."""
    fn = _GENERATORS.get(probe)
    return {} if fn is None else fn(rng_for(seed, item_id), params)


def one_hot(labels: np.ndarray) -> np.ndarray:
    out = np.zeros((len(labels), 10), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def _images(rng: np.random.Generator, m: int) -> np.ndarray:
    """Digit-like images: mostly dark, some bright strokes, values in [0, 1]."""
    ink = rng.random((m, 28, 28)) < 0.25
    return (ink * rng.random((m, 28, 28))).astype(np.float32)


@_generator("create_placeholders")
def _placeholders(rng, params) -> Inputs:
    """A batch to feed through X and Y, and weights the parent sums it with."""
    m = 7
    return {"X": _images(rng, m), "Y": one_hot(rng.integers(0, 10, m)),
            "KX": rng.normal(0, 1, (28, 28)).astype(np.float32),
            "KY": rng.normal(0, 1, 10).astype(np.float32)}


@_generator("forward_propagation")
def _forward(rng, params) -> Inputs:
    m, h = int(params["m"]), int(params["n_hidden"])
    return {
        "X": _images(rng, m),
        "W1": rng.normal(0, np.sqrt(2 / (784 + h)), (784, h)).astype(np.float32),
        "b1": rng.normal(0, 0.3, h).astype(np.float32),
        "W2": rng.normal(0, np.sqrt(2 / (h + 10)), (h, 10)).astype(np.float32),
        "b2": rng.normal(0, 0.5, 10).astype(np.float32),
    }


@_generator("compute_cost")
def _cost(rng, params) -> Inputs:
    m = int(params["m"])
    return {"Z": rng.normal(0, 2, (m, 10)).astype(np.float32),
            "Y": one_hot(rng.integers(0, 10, m))}


@_generator("compute_accuracy")
def _accuracy(rng, params) -> Inputs:
    m = int(params["m"])
    Z = rng.normal(0, 1, (m, 10)).astype(np.float32)
    labels = np.argmax(Z, axis=1)
    wrong = rng.random(m) < 0.4
    labels[wrong] = (labels[wrong] + rng.integers(1, 10, wrong.sum())) % 10
    return {"Z": Z, "Y": one_hot(labels)}


@_generator("create_train_step")
def _train_step(rng, params) -> Inputs:
    """Q7's problem: the assignment's own network and cost on real MNIST images.

    ``m`` images of the offline subset (the data every grade uses by default)
    with their one-hot labels, and a LINEAR -> RELU -> LINEAR network of
    ``n_hidden`` units whose Glorot-uniform weights and zero biases the grader
    draws: the student's optimizer runs on the problem it was chosen for.
    """
    m, h = int(params["m"]), int(params["n_hidden"])
    images, labels = _real_images(rng, m)
    return {"X": images, "Y": one_hot(labels), **mlp_parameters(rng, h)}


def mlp_parameters(rng: np.random.Generator, n_hidden: int) -> Inputs:
    """Glorot-uniform weights and zero biases, as the starter recommends."""
    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
    return {"W1": glorot(784, n_hidden), "b1": np.zeros(n_hidden, np.float32),
            "W2": glorot(n_hidden, 10), "b2": np.zeros(10, np.float32)}


def _real_images(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` distinct training images of the offline MNIST subset, in [0, 1], and their digits."""
    from .data import grading_data  # the loader is read once per process, there
    x_train, y_train, _, _, _ = grading_data("offline")
    if not 0 < m <= len(x_train):
        raise ValueError(f"m={m}: the offline subset has {len(x_train)} training images")
    chosen = np.sort(rng.choice(len(x_train), size=m, replace=False))
    images = np.asarray(x_train[chosen], dtype=np.float32).reshape(m, 28, 28)
    if images.max() > 1.0:
        images = images / 255.0
    return images.astype(np.float32), np.asarray(y_train[chosen], dtype=np.int64)


@_generator("initialize_session")
def _session(rng, params) -> Inputs:
    return {"A": rng.normal(0, 1, (3, 4)).astype(np.float32)}


def _linear_task(rng, n: int) -> Inputs:
    """Data and the weights of a stand-in cost, mean((x . u) * (y . v)): positive, about 10 to
    20 like a real loss, and different for every batch, so a printed or returned cost shows
    which batch it was measured on."""
    return {"images": _images(rng, n), "labels": one_hot(rng.integers(0, 10, n)),
            "u": (np.abs(rng.normal(0, 1, 784)) / 28).astype(np.float32),
            "v": (rng.normal(0, 1, 10) + 5).astype(np.float32)}


@_generator("train")
def _train(rng, params) -> Inputs:
    return _linear_task(rng, int(params["n"]))


@_generator("evaluate")
def _evaluate(rng, params) -> Inputs:
    inputs = _linear_task(rng, int(params["n"]))
    inputs["R"] = rng.normal(0, 1, (784, 10)).astype(np.float32)
    return inputs


def linear_costs(inputs: Inputs, images, labels) -> np.ndarray:
    """The stand-in cost of each example, (x . u) * (y . v), in float64."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    u, v = inputs["u"].astype(np.float64), inputs["v"].astype(np.float64)
    return (flat @ u) * (np.asarray(labels, dtype=np.float64) @ v)


def linear_cost(inputs: Inputs, images, labels) -> float:
    """The stand-in cost of the ``train`` and ``evaluate`` probes on one batch, in float64:
    mean((x . u) * (y . v)) (see :func:`_linear_task`)."""
    return float(np.mean(linear_costs(inputs, images, labels)))


def window_costs(inputs: Inputs, size: int) -> np.ndarray:
    """The stand-in cost of every run of ``size`` consecutive examples, images[o:o + size]
    for each offset o: the batches a loop that slices the arrays itself can feed."""
    per_example = linear_costs(inputs, inputs["images"], inputs["labels"])
    if not 1 <= size <= len(per_example):
        return np.zeros(0)
    sums = np.concatenate([[0.0], np.cumsum(per_example)])
    return (sums[size:] - sums[:-size]) / size


def evaluate_values(inputs: Inputs, count: int | None = None) -> tuple[float, float]:
    """The cost and accuracy tensors of the ``evaluate`` probe, in numpy."""
    images = inputs["images"][:count].reshape(-1, 784).astype(np.float64)
    labels = inputs["labels"][:count].astype(np.float64)
    accuracy = np.mean(np.argmax(images @ inputs["R"], 1) == np.argmax(labels, 1))
    return linear_cost(inputs, images, labels), float(accuracy)


def model_inputs(source: str | None) -> tuple[Inputs, Inputs]:
    """The model item's arrays: (the training split the child trains on, the test split
    the parent keeps: the child never sees a test image, it sends its trained parameters
    and the parent computes the predictions)."""
    from .data import grading_data
    x_train, y_train, x_test, y_test, _ = grading_data(source)
    return ({"train_images": x_train, "train_labels": y_train},
            {"test_images": x_test, "test_labels": np.asarray(y_test, dtype=np.int64)})
