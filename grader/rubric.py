"""Load ``rubric.yaml`` and validate all of it before any submission runs.

Every problem is collected with its key path and reported at once::

    rubric.yaml: questions[3].checks[0].kind: 'acc' is not one of allclose, ...

Beyond the shape of the YAML, a rubric is checked against the declarations:
each item's ``params`` against what its probe takes (``probes.py``), and each
check against the probes and targets its kind fits (``checks``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .checks import CHECKS, COMMON_KEYS, one_of
from .diagnoses import DIAGNOSES
from .errors import RubricError
from .probes import PROBES, Probe

VISIBILITIES = ("public", "hidden")
# How Gradescope shows the tests of hidden checks: one of its visibilities, or "withheld"
# (visible with their score, so that students see their total, but no feedback).
GRADESCOPE_VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible", "withheld")
MAX_EXPECTS_CHARS = 200
LIMIT_KEYS = {"startup_seconds": (int, float), "import_seconds": (int, float),
              "cpu_seconds": int, "memory_mib": int, "processes": int, "file_size_mib": int,
              "output_kib": int, "threads": int}
# Optional limits and their defaults: what one result of the child may weigh
# (a whole grade: four times that), and the size and file count of a full
# sandbox's work directory (a tmpfs).
OPTIONAL_LIMITS = {"result_mib": 8, "workdir_mib": 256, "workdir_files": 4096}
MIN_MEMORY_MIB = 1280  # TensorFlow computes wrong results silently below ~1.25 GiB


@dataclass(frozen=True)
class CheckSpec:
    name: str
    kind: str
    weight: float
    visibility: str
    spec: dict  # the whole YAML mapping, kind-specific keys included
    advice: bool = False  # worth no points; what it finds is shown as advice


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    probe: str
    points: float
    budget_seconds: float
    params: dict          # visibility -> the probe's parameters
    checks: tuple[CheckSpec, ...]
    data: str | None = None
    hidden_points: float = 0.0   # points of hidden checks left out of this rubric (student copy)
    expects: str = ""            # one line: what the question asks for (unanswered rows show it)

    def visibilities(self, allowed: tuple[str, ...]) -> list[str]:
        return [v for v in VISIBILITIES if v in allowed and any(c.visibility == v for c in self.checks)]

    def points_for(self, visibility: str) -> float:
        total = sum(c.weight for c in self.checks)
        return self.points * sum(c.weight for c in self.checks if c.visibility == visibility) / total


@dataclass(frozen=True)
class LatePolicy:
    """``late_policy`` of rubric.yaml: a share of the raw score lost per day or hour late."""

    due: datetime                 # timezone-aware (UTC when the rubric gives none)
    penalty_percent: float        # of the raw score, per unit started after the grace period
    per: str = "day"              # "day" or "hour"
    grace_minutes: float = 0.0
    max_percent: float = 100.0    # the cap
    extensions: Path | None = None  # a CSV: student,extra_hours

    @property
    def unit_hours(self) -> float:
        return 24.0 if self.per == "day" else 1.0


LATE_UNITS = ("day", "hour")


@dataclass(frozen=True)
class Rubric:
    path: Path
    assignment: str
    submission_name: str
    seed: int
    public_seed: int
    tolerances: dict
    limits: dict
    items: tuple[Item, ...]
    digest: str
    gradescope_hidden_visibility: str = "after_published"
    late_policy: LatePolicy | None = None

    @property
    def max_total(self) -> float:
        return sum(i.points for i in self.items)

    @property
    def full_total(self) -> float:
        """The total with the hidden checks a student copy leaves out."""
        return sum(i.points + i.hidden_points for i in self.items)

    def item(self, item_id: str) -> Item:
        return next(i for i in self.items if i.id == item_id)

    def seed_for(self, visibility: str) -> int:
        return self.public_seed if visibility == "public" else self.seed


class _Problems:
    def __init__(self, name: str):
        self.name = name
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{self.name}: {path}: {message}")

    def typed(self, mapping: dict, key: str, kind, path: str, required: bool = True) -> Any:
        if key not in mapping:
            if required:
                self.add(f"{path}.{key}" if path else key, "is missing")
            return None
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.add(f"{path}.{key}" if path else key,
                     f"{value!r} is a {type(value).__name__}, expected {names}")
            return None
        return value

    def fields(self, mapping: dict, path: str, kinds: dict) -> list:
        """Each required key of ``kinds`` typed (None where it is missing or wrong)."""
        return [self.typed(mapping, key, kind, path) for key, kind in kinds.items()]

    def mapping(self, raw: Any, path: str) -> bool:
        if not isinstance(raw, dict):
            self.add(path, f"expected a mapping, got {type(raw).__name__}")
        return isinstance(raw, dict)

    def among(self, value, allowed, path: str) -> bool:
        if value not in allowed:
            self.add(path, one_of(value, allowed))
        return value in allowed


def _validate_check(problems: _Problems, raw: Any, path: str) -> CheckSpec | None:
    if not problems.mapping(raw, path):
        return None
    kind, name = problems.fields(raw, path, {"kind": str, "name": str})
    weight = problems.typed(raw, "weight", (int, float), path, required=False)
    visibility = raw.get("visibility", "public")
    problems.among(visibility, VISIBILITIES, f"{path}.visibility")
    advice = raw.get("advice", False)
    if not isinstance(advice, bool):
        problems.add(f"{path}.advice", f"{advice!r} is a {type(advice).__name__}, expected "
                                       "true or false")
        advice = False
    if advice and weight != 0:
        problems.add(f"{path}.weight", "an advice check is worth no points: give it weight: 0")
    elif not advice and weight is not None and weight <= 0:
        problems.add(f"{path}.weight", f"{weight!r} must be positive (a check worth no points "
                                       "is advice: add advice: true)")
    for key, value in raw.items():
        if key in COMMON_KEYS and key not in ("kind", "name", "weight", "visibility", "advice"):
            problems.typed(raw, key, COMMON_KEYS[key], path)
    asked_by = raw.get("asked_by")
    if not advice and "asked_by" not in raw:
        problems.add(f"{path}.asked_by", "is missing: quote the sentence of the starter that "
                                         "asks for what this check scores (or make it advice)")
    elif isinstance(asked_by, str) and not asked_by.strip():
        problems.add(f"{path}.asked_by", "is empty: quote the sentence of the starter that asks "
                                         "for what this check scores")
    for i, diag in enumerate(raw.get("diagnoses") or []):
        if diag not in DIAGNOSES:
            problems.add(f"{path}.diagnoses[{i}]", one_of(diag, DIAGNOSES))
    if kind is None:
        return None
    if kind not in CHECKS:
        problems.add(f"{path}.kind", one_of(kind, CHECKS))
        return None
    spec = CHECKS[kind]
    for key, typ in spec.required.items():
        problems.typed(raw, key, typ, path)
    for key, typ in spec.optional.items():
        problems.typed(raw, key, typ, path, required=False)
    known = set(COMMON_KEYS) | set(spec.required) | set(spec.optional)
    for key in raw:
        if key not in known:
            problems.add(f"{path}.{key}", f"unknown key for a {kind} check")
    for key, problem in (spec.validate(raw) if spec.validate else ()):
        problems.add(f"{path}.{key}", problem)
    if name is None or weight is None and "weight" in raw:
        return None
    return CheckSpec(name=name, kind=kind, weight=float(1 if weight is None else weight),
                     visibility=visibility, spec=dict(raw), advice=advice)


def _validate_params(problems: _Problems, probe: Probe, params: dict, path: str) -> None:
    """Each visibility's parameters: the ones the probe takes, of their declared types."""
    given = {vis: value for vis, value in params.items()
             if vis in VISIBILITIES and isinstance(value, dict)} or {"public": {}}
    for vis, values in given.items():
        where = f"{path}.params.{vis}"
        problems.fields(values, where, probe.params)
        for key, kind in probe.optional.items():
            problems.typed(values, key, kind, where, required=False)
        for key in values:
            if key not in probe.params and key not in probe.optional:
                problems.add(f"{where}.{key}", f"unknown parameter for the {probe.name} probe")


def _check_fits(problems: _Problems, probe: Probe, spec: CheckSpec, path: str) -> None:
    """The check's kind fits the probe, and every target it names is one the probe returns."""
    kind = CHECKS[spec.kind]
    if kind.probes is not None and probe.name not in kind.probes:
        problems.add(path, f"check {spec.kind!r} does not fit probe {probe.name!r} "
                           f"(it fits {', '.join(sorted(kind.probes))})")
        return
    for _, name, sort in kind.named_targets(spec.spec):
        if not any(t.name == name and t.array == (sort == "array") for t in probe.targets):
            problems.add(path, f"check {spec.kind!r} does not fit probe {probe.name!r} "
                               f"(target {name!r})")


def _validate_item(problems: _Problems, raw: Any, path: str) -> Item | None:
    if not problems.mapping(raw, path):
        return None
    item_id, title, probe, points, budget = problems.fields(
        raw, path, {"id": str, "title": str, "probe": str, "points": (int, float),
                    "budget_seconds": (int, float)})
    declared = PROBES.get(probe) if probe is not None and \
        problems.among(probe, PROBES, f"{path}.probe") else None
    if points is not None and points < 0:
        problems.add(f"{path}.points", f"{points!r} must not be negative")
    if budget is not None and budget <= 0:
        problems.add(f"{path}.budget_seconds", f"{budget!r} must be positive")
    params = raw.get("params", {}) or {}
    if not isinstance(params, dict):
        problems.add(f"{path}.params", "expected a mapping of visibility to parameters")
        params = {}
    for vis, value in params.items():
        if vis not in VISIBILITIES:
            problems.add(f"{path}.params.{vis}", one_of(vis, VISIBILITIES))
        elif not isinstance(value, dict):
            problems.add(f"{path}.params.{vis}", "expected a mapping")
    if declared is not None:
        _validate_params(problems, declared, params, path)
    raw_checks = raw.get("checks")
    checks = []
    if not isinstance(raw_checks, list) or not raw_checks:
        problems.add(f"{path}.checks", "expected a non-empty list of checks")
    else:
        for j, c in enumerate(raw_checks):
            spec = _validate_check(problems, c, f"{path}.checks[{j}]")
            if spec is not None:
                checks.append(spec)
                if declared is not None:
                    _check_fits(problems, declared, spec, f"{path}.checks[{j}]")
                if spec.visibility == "hidden" and "hidden" not in params and params:
                    problems.add(f"{path}.params", "has no 'hidden' parameters for its hidden checks")
    data = raw.get("data")
    if data is not None and not isinstance(data, str):
        problems.add(f"{path}.data", "expected offline, keras or a path")
    hidden_points = problems.typed(raw, "hidden_points", (int, float), path, required=False) or 0
    if hidden_points < 0:
        problems.add(f"{path}.hidden_points", f"{hidden_points!r} must not be negative")
    expects = problems.typed(raw, "expects", str, path, required=False) or ""
    if "\n" in expects.strip() or len(expects) > MAX_EXPECTS_CHARS:
        problems.add(f"{path}.expects", f"must be one line of at most {MAX_EXPECTS_CHARS} characters")
    known = {"id", "title", "probe", "points", "budget_seconds", "params", "checks", "data",
             "hidden_points", "expects"}
    for key in raw:
        if key not in known:
            problems.add(f"{path}.{key}", "unknown key")
    if checks and not any(c.weight > 0 for c in checks):
        problems.add(f"{path}.checks", "every check is advice: an item needs a scored check")
    if None in (item_id, title, probe, points, budget) or not checks \
            or not any(c.weight > 0 for c in checks):
        return None
    resolved = {vis: dict(params.get(vis, params.get("public", {})) or {}) for vis in VISIBILITIES}
    return Item(id=item_id, title=title, probe=probe, points=float(points),
                budget_seconds=float(budget), params=resolved, checks=tuple(checks), data=data,
                hidden_points=float(hidden_points), expects=" ".join(expects.split()))


def _as_due(value: Any) -> datetime | None:
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _validate_late_policy(problems: _Problems, raw: Any, path: Path) -> LatePolicy | None:
    """``late_policy``: due, penalty_percent and per required; grace_minutes, max_percent
    and extensions (a CSV beside the rubric) optional."""
    if raw is None:
        return None
    if not problems.mapping(raw, "late_policy"):
        return None
    due = None
    if "due" not in raw:
        problems.add("late_policy.due", "is missing: a date and time, e.g. 2026-12-01T23:59:00+00:00")
    else:
        due = _as_due(raw["due"])
        if due is None:
            problems.add("late_policy.due", f"{raw['due']!r} is not a date and time "
                                            "(e.g. 2026-12-01T23:59:00+00:00)")
    penalty = problems.typed(raw, "penalty_percent", (int, float), "late_policy")
    per = raw.get("per", "day")
    problems.among(per, LATE_UNITS, "late_policy.per")
    grace = problems.typed(raw, "grace_minutes", (int, float), "late_policy", required=False)
    cap = problems.typed(raw, "max_percent", (int, float), "late_policy", required=False)
    for key, value in (("penalty_percent", penalty), ("grace_minutes", grace), ("max_percent", cap)):
        if value is not None and value < 0:
            problems.add(f"late_policy.{key}", f"{value!r} must not be negative")
    for key, value in (("penalty_percent", penalty), ("max_percent", cap)):
        if value is not None and value > 100:
            problems.add(f"late_policy.{key}", f"{value!r} is more than 100 (a percent of the score)")
    extensions = problems.typed(raw, "extensions", str, "late_policy", required=False)
    for key in raw:
        if key not in {"due", "penalty_percent", "per", "grace_minutes", "max_percent",
                       "extensions"}:
            problems.add(f"late_policy.{key}", "unknown key")
    if due is None or penalty is None or per not in LATE_UNITS:
        return None
    return LatePolicy(due=due, penalty_percent=float(penalty), per=per,
                      grace_minutes=float(grace or 0), max_percent=float(100 if cap is None else cap),
                      extensions=(path.parent / extensions) if extensions else None)


def parse_rubric(data: Any, path: Path, text: str = "") -> Rubric:
    """Validate already-parsed YAML; raises RubricError listing every problem."""
    problems = _Problems(path.name)
    if not isinstance(data, dict):
        raise RubricError(f"{path.name}: expected a mapping at the top level")
    seed = problems.typed(data, "seed", int, "")
    public_seed = problems.typed(data, "public_seed", int, "")
    tolerances = problems.typed(data, "tolerances", dict, "") or {}
    for key in ("rtol", "atol"):
        value = problems.typed(tolerances, key, (int, float), "tolerances")
        if value is not None and value < 0:
            problems.add(f"tolerances.{key}", f"{value!r} must not be negative")
    limits = problems.typed(data, "limits", dict, "") or {}
    for key, typ in LIMIT_KEYS.items():
        value = problems.typed(limits, key, typ, "limits")
        if value is not None and value <= 0:
            problems.add(f"limits.{key}", f"{value!r} must be positive")
    for key, default in OPTIONAL_LIMITS.items():
        value = problems.typed(limits, key, int, "limits", required=False)
        if value is not None and value <= 0:
            problems.add(f"limits.{key}", f"{value!r} must be positive")
        limits.setdefault(key, default)
    memory = limits.get("memory_mib")
    if isinstance(memory, int) and 0 < memory < MIN_MEMORY_MIB:
        problems.add("limits.memory_mib", f"{memory} is below {MIN_MEMORY_MIB}: TensorFlow "
                                          "computes wrong results with so little address space")
    items, seen = [], set()
    raw_items = data.get("questions")
    if not isinstance(raw_items, list) or not raw_items:
        problems.add("questions", "expected a non-empty list")
        raw_items = []
    for i, raw in enumerate(raw_items):
        item = _validate_item(problems, raw, f"questions[{i}]")
        if item is None:
            continue
        if item.id in seen:
            problems.add(f"questions[{i}].id", f"{item.id!r} appears twice")
        seen.add(item.id)
        items.append(item)
    gs_visibility = data.get("gradescope_hidden_visibility", "after_published")
    if gs_visibility not in GRADESCOPE_VISIBILITIES:
        problems.add("gradescope_hidden_visibility", one_of(gs_visibility, GRADESCOPE_VISIBILITIES))
    late_policy = _validate_late_policy(problems, data.get("late_policy"), path)
    for key in data:
        if key not in {"assignment", "submission_name", "seed", "public_seed", "tolerances",
                       "limits", "questions", "gradescope_hidden_visibility", "late_policy"}:
            problems.add(key, "unknown key")
    if problems.items:
        raise RubricError("\n".join(problems.items))
    digest = hashlib.sha256((text or json.dumps(data, sort_keys=True, default=str)).encode()).hexdigest()
    return Rubric(path=path, assignment=str(data.get("assignment", "")),
                  submission_name=str(data.get("submission_name", "tensorflow_tutorial.py")),
                  seed=seed, public_seed=public_seed, tolerances=dict(tolerances),
                  limits=dict(limits), items=tuple(items), digest=digest,
                  gradescope_hidden_visibility=gs_visibility, late_policy=late_policy)


def load_rubric(path: str | Path) -> Rubric:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RubricError(f"{path}: cannot read the rubric: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise RubricError(f"{path.name}: not valid YAML{line}: "
                          f"{getattr(exc, 'problem', None) or exc}") from None
    return parse_rubric(data, path, text)


# ------------------------------------------------------------ traceability

def starter_sentences(source: str) -> str:
    """The text a student reads in the starter: every docstring and comment, with
    whitespace collapsed (so a quoted sentence may span wrapped lines)."""
    import ast
    import io
    import tokenize

    parts = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                parts.append(doc)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            parts.append(token.string.lstrip("#"))
    return _collapse("\n".join(parts))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def untraceable_checks(rubric: Rubric, starter_source: str) -> list[str]:
    """Every scored check whose ``asked_by`` sentence the starter does not say, with its path.

    A check that scores something must quote the starter's own words that ask
    for it; a check the starter does not ask for is advice (``advice: true``)."""
    text = starter_sentences(starter_source)
    problems = []
    for item in rubric.items:
        for j, check in enumerate(item.checks):
            if check.advice:
                continue
            asked_by = check.spec.get("asked_by")
            where = f"{item.id}: {check.name!r}"
            if not isinstance(asked_by, str) or not asked_by.strip():
                problems.append(f"{where}: no asked_by sentence")
            elif _collapse(asked_by) not in text:
                problems.append(f"{where}: the starter does not say {asked_by!r}")
    return problems
