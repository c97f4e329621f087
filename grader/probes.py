"""What each probe is, declared: its parameters, its inputs, the targets it returns.

A probe runs in the sandboxed child (``inside/runner.py``, which is copied there
alone and must not import this package); this module is its parent-side half.
Each :class:`Probe` says

* ``params``: the rubric parameters it takes (``params.public`` / ``.hidden``),
  with their types, and which of them it needs;
* ``inputs``: how the grader makes the arrays the child receives (and the
  ones the parent keeps to itself);
* ``targets``: what comes back, each an array (``value_<name>`` on the wire)
  or a JSON value, with the dtype and dimensions it may have;
* whether its contract function is one the whole pipeline calls
  (``pipeline``), or whether it *is* the whole pipeline (``whole``).

The rubric is validated against these declarations (``rubric.py``), and every
result the child sends is checked against them (:func:`validate`) before a
check looks at it: a target of the wrong kind is the submission's error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .inputs import make_inputs, model_inputs
from .outcome import ProbeOutput, ProbeStatus

UNREADABLE = "the grader could not read what your code returned"
NUMBER = (int, float)
_NONE = type(None)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _shape(value) -> bool:
    return value is None or isinstance(value, list) and all(
        v is None or isinstance(v, int) and not isinstance(v, bool) for v in value)


# The keys inside/harness.describe() may give for a returned object, and what each may be.
_TENSOR_KEYS = {"type": str, "is_tensor": bool, "is_variable": bool, "dtype": str, "op": str,
                "trainable": bool, "feed_error": str, "describe_error": str}


def _tensor(value) -> bool:
    return isinstance(value, dict) and _shape(value.get("shape")) and all(
        isinstance(value[k], t) for k, t in _TENSOR_KEYS.items() if k in value)


def _returned(value) -> bool:
    """What a probe says of a returned sequence: its type and its elements' types."""
    return isinstance(value, dict) and isinstance(value.get("type", ""), str) \
        and _strings(value.get("element_types", []))


def _of(kind):
    return lambda value: isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


# What a JSON target may be: a name for the feedback and a test of the value.
_JSON_KINDS = {"tensor": _tensor, "returned": _returned, "strings": _strings,
               "list": _of(list), "str": _of(str), "bool": _of(bool), "int": _of(int),
               "number": _of((int, float))}
# What an array target may be: numpy dtype kinds.
_ARRAY_KINDS = {"float": "f", "int": "iu", "numeric": "fiub"}


@dataclass(frozen=True)
class Target:
    """One thing a probe returns."""

    name: str
    kind: str                      # arrays: "float" | "int" | "numeric"; JSON: a _JSON_KINDS name
    array: bool = True             # an array (``value_<name>``) or a JSON value in the result
    ndim: tuple[int, ...] = ()     # the dimensions an array may have; () for any
    required: bool = False         # an honest child always sends it

    def problem(self, value) -> str:
        """Why ``value`` is not this target, or ""."""
        if self.array:
            numeric = isinstance(value, (np.ndarray, np.generic))
            if not numeric or value.dtype.kind not in _ARRAY_KINDS[self.kind]:
                found = value.dtype if numeric else type(value).__name__
                return f"{self.name} is {found}, not {self.kind} numbers"
            if self.ndim and value.ndim not in self.ndim:
                return f"{self.name} has {value.ndim} dimensions"
            return ""
        if not _JSON_KINDS[self.kind](value):
            return f"{self.name} is not a {self.kind} ({type(value).__name__})"
        return ""


def arrays(*names: str, kind: str = "float", ndim: tuple[int, ...] = (),
           required: bool = False) -> tuple[Target, ...]:
    return tuple(Target(n, kind, True, ndim, required) for n in names)


def meta(*names: str, kind: str = "tensor", required: bool = False) -> tuple[Target, ...]:
    return tuple(Target(n, kind, False, (), required) for n in names)


Inputs = Callable[["object", int, dict], tuple[dict, dict]]


def _generated(item, seed: int, params: dict) -> tuple[dict, dict]:
    """The generator of ``inputs.py`` registered for the probe; nothing secret."""
    return make_inputs(item.probe, seed, item.id, params), {}


def _grading_data(item, seed: int, params: dict) -> tuple[dict, dict]:
    """The model item's data (``data:`` in the rubric); its test split stays here."""
    return model_inputs(item.data)


_PREDICT_CHUNK = 1000
MAX_HIDDEN = 2048  # the widest hidden layer the parent evaluates (its time and memory)


def model_predictions(arrays: dict, images: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The digits that the contract's network, LINEAR -> RELU -> LINEAR -> SOFTMAX, says for
    ``images`` with the trained parameters a child sent (``W1``, ``b1``, ``W2``, ``b2``),
    computed here in numpy; or (None, why) when the parameters do not fit that network.

    The child never sees a test image, so nothing it carries or looks up can answer for
    one: only parameters that classify digits earn the model's points.
    """
    W1, b1, W2, b2 = (arrays.get(k) for k in PARAMETERS)
    if W1 is None or W2 is None:
        return None, "the trained parameters W1 and W2 did not come back"
    # A pipeline that keeps W1 as (n, 784) or W2 as (10, n) and transposes them in its
    # products is consistent: read them the way round that fits (the contract's first).
    if W1.ndim == 2 and W1.shape[0] != 784 and W1.shape[1] == 784:
        W1 = W1.T
    if W2.ndim == 2 and W2.shape[1] != 10 and W2.shape[0] == 10:
        W2 = W2.T
    n = W1.shape[1] if W1.ndim == 2 else -1
    b1 = np.zeros(max(n, 0), np.float32) if b1 is None else b1   # a network without biases
    b2 = np.zeros(10, np.float32) if b2 is None else b2
    if W1.shape != (784, n) or W2.shape != (n, 10) or b1.size != n or b2.size != 10 \
            or not 0 < n <= MAX_HIDDEN:
        return None, (f"the trained parameters have shapes W1 {W1.shape}, b1 {b1.shape}, "
                      f"W2 {W2.shape}, b2 {b2.shape}; the network needs W1 (784, n), b1 (n,), "
                      f"W2 (n, 10), b2 (10,) with n at most {MAX_HIDDEN}")
    W1, b1, W2, b2 = (np.asarray(a, dtype=np.float64) for a in (W1, b1.reshape(-1), W2,
                                                                 b2.reshape(-1)))
    if not all(np.isfinite(a).all() for a in (W1, b1, W2, b2)):
        return None, "the trained parameters hold NaN or infinite values"
    flat = np.asarray(images).reshape(len(images), -1)
    digits = []
    for start in range(0, len(flat), _PREDICT_CHUNK):  # scaled as the child scales its images
        x = flat[start:start + _PREDICT_CHUNK].astype(np.float32).astype(np.float64) / 255
        logits = np.maximum(x @ W1 + b1, 0.0) @ W2 + b2
        digits.append(np.argmax(logits, axis=1))
    return np.concatenate(digits).astype(np.int64) if digits else np.zeros(0, np.int64), ""


@dataclass(frozen=True)
class Probe:
    name: str                      # the probe's name in inside/probes.PROBES and rubric.yaml
    targets: tuple[Target, ...]
    params: dict = field(default_factory=dict)     # name -> type(s), required
    optional: dict = field(default_factory=dict)   # name -> type(s), may be left out
    inputs: Inputs = _generated
    pipeline: bool = False         # the whole-pipeline probe calls this contract function
    whole: bool = False            # runs the submission's whole pipeline

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def array_targets(self) -> list[str]:
        return [t.name for t in self.targets if t.array]

    def make_inputs(self, item, seed: int, params: dict) -> tuple[dict, dict]:
        """(arrays the child receives, arrays the parent keeps)."""
        return self.inputs(item, seed, params)

    def validate(self, out: ProbeOutput) -> ProbeOutput:
        """``out`` if every declared target in it is what it may be, else the
        submission's error for the item, naming the first that is not."""
        if not out.ok:
            return out
        for t in self.targets:
            where = out.arrays if t.array else out.meta
            if t.name not in where:
                if t.required:
                    return ProbeOutput.failure(ProbeStatus.ERROR,
                                               f"{UNREADABLE}: {self.name} sent no {t.name}")
                continue
            problem = t.problem(where[t.name])
            if problem:
                return ProbeOutput.failure(ProbeStatus.ERROR, f"{UNREADABLE}: {problem}")
        return out


PARAMETERS = ("W1", "b1", "W2", "b2")

PROBES: dict[str, Probe] = {p.name: p for p in (
    Probe("create_placeholders", meta("X", "Y", required=True) + arrays("fed_X", "fed_Y"),
          pipeline=True),
    Probe("initialize_parameters",
          meta("keys", kind="list", required=True) + meta(*PARAMETERS) + arrays(*PARAMETERS),
          optional={"n_hidden": (int, _NONE)}, pipeline=True),
    Probe("forward_propagation", meta("Z2", "A2") + arrays("Z2", "A2", required=True),
          params={"m": int, "n_hidden": int}, pipeline=True),
    Probe("compute_cost", meta("cost") + arrays("cost", required=True),
          params={"m": int}, pipeline=True),
    Probe("compute_accuracy", meta("accuracy") + arrays("accuracy", required=True),
          params={"m": int}),
    Probe("create_train_step",
          meta("step", "step_lr0")
          + arrays(*(f"{k}_trace" for k in PARAMETERS), *(f"{k}_lr0" for k in PARAMETERS)),
          params={"learning_rate": NUMBER, "steps": int, "m": int, "n_hidden": int},
          pipeline=True),
    Probe("initialize_session",
          meta("session", required=True) + meta("is_session", kind="bool", required=True)
          + meta("same_graph", kind="bool") + meta("uninitialized", kind="strings")
          + meta("n_variables", kind="int") + meta("initializer_created", kind="bool")
          + arrays("a"),
          pipeline=True),
    Probe("train",
          meta("printed", kind="str") + meta("batch_sizes", kind="list")
          + meta("steps_run", kind="int") + meta("returned", kind="returned")
          + meta("arrays_read", kind="bool")
          + arrays("fed_total") + arrays("returned", ndim=(1,)),
          params={"num_steps": int, "batch_size": int, "print_every": int, "n": int},
          pipeline=True),
    Probe("evaluate", meta("returned", kind="returned") + arrays("returned", ndim=(1,)),
          params={"n": int}),
    Probe("improvements", meta("text_type", "text", kind="str", required=True)),
    Probe("model", arrays("W1", "W2", ndim=(2,), required=True)
          + arrays("b1", "b2", ndim=(1, 2))
          + arrays("costs", ndim=(1,)) + meta("learning_rate", kind="number")
          + meta("batches_drawn", kind="int") + meta("arrays_read", kind="bool"),
          params={"steps": int, "batch_size": int, "learning_rate": NUMBER, "n_hidden": int},
          optional={"sgd_learning_rate": NUMBER}, inputs=_grading_data, whole=True),
)}


def probe(name: str) -> Probe:
    return PROBES[name]
