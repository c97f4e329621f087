"""What every check kind shares: the verdict, the context, the registry.

A kind registers with :func:`check` and declares what it fits: the probes
(``probes``), the rubric keys that name the probe's targets (``targets``),
whether it compares with the reference's output (``reference``) and any
rule of its own on its parameters (``validate``).  ``rubric.py`` checks a
rubric against these declarations before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .diagnoses import DIAGNOSES, Case
from .outcome import ProbeOutput

@dataclass(frozen=True)
class Verdict:
    """``passed`` or not; ``message`` may show values, ``diagnosis`` never does."""

    passed: bool
    message: str
    diagnosis: str | None = None
    pending: bool = False
    advice: bool = False    # a remark worth no points: never a failure
    unanswered: bool = False  # no answer at all (an empty free-text answer)


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
    probes: frozenset | None = None   # the probes it fits; None: any that has its targets
    targets: dict = field(default_factory=dict)  # rubric key -> "array" | "json": names a target
    reference: bool = False           # compares with the reference's output (ctx.expected)
    validate: Callable[[dict], Iterator[tuple[str, str]]] | None = None  # (key, problem)

    def named_targets(self, spec: dict) -> Iterator[tuple[str, str, str]]:
        """(rubric key, target name, "array" | "json") for each target the spec names."""
        for key, sort in self.targets.items():
            value = spec.get(key)
            for name in (value if isinstance(value, list) else [value]):
                if isinstance(name, str):
                    yield key, name, sort


CHECKS: dict[str, CheckKind] = {}
PARAMETER_NAMES = ("W1", "b1", "W2", "b2")  # the dict initialize_parameters returns
COMMON_KEYS = {"name": str, "kind": str, "weight": (int, float), "visibility": str,
               "hint": str, "diagnoses": list, "asked_by": str, "advice": bool}
ADVICE_PREFIX = "advice (no points): "


def one_of(value, allowed) -> str:
    """A rubric problem: ``value`` is not among ``allowed``."""
    return f"{value!r} is not one of {', '.join(sorted(allowed))}"


def check(name: str, required: dict | None = None, optional: dict | None = None, *,
          probes: tuple[str, ...] | None = None, targets: dict | None = None,
          reference: bool = False, validate=None):
    """Register a check kind with its declaration (see :class:`CheckKind`).  A check the
    rubric marks ``advice: true`` (worth 0 points) never fails: what it would have said
    becomes advice."""
    def register(fn: Callable[[Context], Verdict]):
        def run(ctx: Context) -> Verdict:
            verdict = fn(ctx)
            if ctx.spec.get("advice") is True and not verdict.passed and not verdict.pending:
                return Verdict(True, ADVICE_PREFIX + verdict.message, verdict.diagnosis,
                               advice=True)
            return verdict
        run.__doc__, run.__name__ = fn.__doc__, fn.__name__
        CHECKS[name] = CheckKind(name, run, required or {}, optional or {},
                                 None if probes is None else frozenset(probes), targets or {},
                                 reference, validate)
        return fn
    return register


def run_diagnoses(ctx: Context, target: str, got, expected) -> str | None:
    case = Case(target=target, got=np.asarray(got), expected=np.asarray(expected),
                inputs=ctx.inputs, params=ctx.params, outputs=dict(ctx.got.arrays),
                meta=dict(ctx.got.meta))
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
        return "(unknown)"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def has_shape(name: str, shape) -> str:
    """"W1 has shape (784, 128)", or "W1 has no static shape" when TensorFlow does not know it."""
    if shape is None:
        return f"{name} has no static shape"
    return f"{name} has shape {fmt_shape(shape)}"


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

