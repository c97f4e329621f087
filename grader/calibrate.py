"""``python -m grader calibrate``: the model item's threshold, and the training steps it needs.

Without ``--steps``: the reference is trained over several seeds at the
rubric's step count, and a threshold is suggested below its lowest accuracy.

With ``--steps 300,600,1500``: every pipeline is trained at each step count
(a grade of its own each time: the same inputs, seed and optimizer rule as
grading) and the table says, for each count, the lowest accuracy of a pipeline
that learns and the highest of one that does not:

* pipelines that learn: the reference over ``--seeds`` seeds, and the corpus's
  fixtures expected to get the model's full marks;
* pipelines that do not: the corpus's fixtures expected to get 0 for the model;
* a pipeline that fails (an error, a timeout) at every step count is listed and
  left out: no step count changes its verdict;
* fixtures whose model score the corpus does not assert ("any") are shown only.

A step count separates when a threshold exists at least ``--margin`` below every
learner and ``--margin`` above every non-learner; the fewest such steps is the
suggestion. These are accuracies, not timings: the machine's load does not change them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from . import engine
from .errors import GraderError, UsageError
from .probes import model_predictions
from .rubric import load_rubric

__all__ = ["Pipeline", "always_failing", "corpus_pipelines", "run_calibrate",
           "separation"]

LEARNS, STILL, SHOWN = "learns", "does not learn", "not asserted"


@dataclass(frozen=True)
class Pipeline:
    name: str
    kind: str              # LEARNS, STILL or SHOWN
    source: str            # the submission's text
    seed: int | None = None   # the child's seed; None: the grade's own


def _expected_model(expect: dict | None, points: float):
    value = (expect or {}).get("model", points)
    if value == "any":
        return SHOWN
    return LEARNS if float(value) >= points - 0.01 else STILL if float(value) == 0 else SHOWN


def _header(text: str) -> dict:
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(":")
        if sep and key == "expect":
            try:
                return json.loads(value)
            except ValueError:
                return {}
    return {}


def corpus_pipelines(corpus: Path, reference: str, points: float,
                     only: set[str] | None = None) -> list[Pipeline]:
    """The corpus's fixtures (tests/corpus: mutants.yaml, *.py, real/*.py) with what their
    model item is expected to do; ``only``: these names (real/ files as ``real_STEM``)."""
    found = []
    mutants = corpus / "mutants.yaml"
    for entry in (yaml.safe_load(mutants.read_text(encoding="utf-8")) or []
                  if mutants.is_file() else []):
        text = reference
        for old, new in entry.get("replace") or ():
            if text.count(old) != 1:
                raise UsageError(f"{mutants}: {entry.get('name')}: a replacement does not "
                                 "apply to the reference once")
            text = text.replace(old, new)
        found.append(Pipeline(str(entry["name"]), _expected_model(entry.get("expect"), points),
                              text))
    for path in sorted(corpus.glob("*.py")) + sorted((corpus / "real").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.stem if path.parent == corpus else f"real_{path.stem}"
        found.append(Pipeline(name, _expected_model(_header(text), points), text))
    if only is not None:
        unknown = only - {p.name for p in found}
        if unknown:
            raise UsageError(f"no corpus fixture named {', '.join(sorted(unknown))}")
        found = [p for p in found if p.name in only]
    return found


def _accuracies(pipeline: Pipeline, task, counts: list[int], rubric, workroot: Path,
                trusted: bool) -> dict[int, float | str]:
    """Accuracy per step count, or the failure's status ("error", "timeout")."""
    tasks = [replace(task, id=f"{task.item.id}-steps{n}", params={**task.params, "steps": n})
             for n in counts]
    path = workroot / pipeline.name / rubric.submission_name
    path.parent.mkdir(parents=True)
    path.write_text(pipeline.source, encoding="utf-8")
    seed = task.seed if pipeline.seed is None else pipeline.seed
    work = path.parent / "work"
    work.mkdir()
    results, _, _ = engine.run_probes(path, tasks, rubric, "basic", work,
                                      seed_of=lambda t: seed, trusted=trusted)
    found: dict[int, float | str] = {}
    for n, t in zip(counts, tasks):
        out = results[t.id]
        predictions = model_predictions(out.arrays, task.secret["test_images"])[0] \
            if out.ok else None
        found[n] = (float(np.mean(predictions == task.secret["test_labels"]))
                    if predictions is not None else str(out.status) if not out.ok else "error")
    return found


def always_failing(rows: dict[str, tuple[str, dict]]) -> list[str]:
    """The pipelines that fail (an error, a timeout) at every step count: no step count
    changes their verdict, so the separation leaves them out."""
    return [name for name, (_, found) in rows.items()
            if not any(isinstance(v, float) for v in found.values())]


def separation(rows: dict[str, tuple[str, dict]], n: int,
               margin: float) -> tuple[float | None, str, str]:
    """(threshold or None, lowest learner, highest non-learner) at ``n`` steps: the highest
    threshold (in hundredths) ``margin`` below every learner, if it is ``margin`` above every
    non-learner too. A failure at ``n`` counts as accuracy 0."""
    def acc(value) -> float:
        return value if isinstance(value, float) else 0.0  # a failure fails at any threshold
    rows = {k: v for k, v in rows.items() if k not in always_failing(rows)}
    learners = [(acc(found[n]), name) for name, (kind, found) in rows.items() if kind == LEARNS]
    still = [(acc(found[n]), name) for name, (kind, found) in rows.items() if kind == STILL]
    low = min(learners) if learners else (1.0, "-")
    high = max(still) if still else (0.0, "-")
    threshold = float(np.floor((low[0] - margin) * 100) / 100)
    ok = learners and threshold - high[0] >= margin
    return (threshold if ok else None), f"{low[0]:.4f} {low[1]}", f"{high[0]:.4f} {high[1]}"


def _sweep(args, rubric, item, threshold_check) -> int:
    try:
        counts = sorted({int(s) for s in args.steps.split(",")})
    except ValueError:
        raise UsageError(f"--steps {args.steps!r}: give step counts separated by commas") from None
    if not counts or counts[0] < 1:
        raise UsageError("--steps: every step count must be at least 1")
    task = next(t for t in engine.plan(rubric, (threshold_check.visibility,)) if t.item is item)
    reference = engine.REFERENCE_PATH.read_text(encoding="utf-8")
    pipelines = [Pipeline(f"reference seed {rubric.seed + i}", LEARNS, reference, rubric.seed + i)
                 for i in range(args.seeds)]
    if args.corpus is not None:
        only = set(args.only.split(",")) if args.only else None
        pipelines += corpus_pipelines(args.corpus, reference, float(item.points), only)
    print(f"Training {len(pipelines)} pipelines at {', '.join(map(str, counts))} steps...",
          file=sys.stderr)
    rows: dict[str, tuple[str, dict]] = {}
    width = max(len(p.name) for p in pipelines) + 2
    print(f"{'pipeline':<{width}}{'expected':<16}" + "".join(f"{n:>10}" for n in counts))
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp, \
            ThreadPoolExecutor(max(1, args.jobs)) as pool:
        runs = [(p, pool.submit(_accuracies, p, task, counts, rubric, Path(tmp),
                                p.seed is not None)) for p in pipelines]
        for p, run in runs:  # in order, each as soon as it and those before it are done
            found = run.result()
            rows[p.name] = (p.kind, found)
            print(f"{p.name:<{width}}{p.kind:<16}" + "".join(
                f"{v:>10.4f}" if isinstance(v, float) else f"{v:>10}" for v in found.values()),
                flush=True)
    failing = always_failing(rows)
    if failing:
        print(f"\nfailing at every step count, left out: {', '.join(failing)}")
        odd = [name for name in failing if rows[name][0] == LEARNS]
        if odd:
            print(f"  (expected to learn, yet failing: {', '.join(odd)}: see their corpus "
                  "fixtures)")
    print(f"\nsteps  lowest learner{'':<28}highest non-learner{'':<23}threshold (margin "
          f"{args.margin:.2f})")
    chosen = None
    for n in counts:
        threshold, low, high = separation(rows, n, args.margin)
        print(f"{n:>5}  {low:<42}{high:<42}"
              f"{'%.2f' % threshold if threshold is not None else 'does not separate'}")
        if threshold is not None and chosen is None:
            chosen = (n, threshold)
    if chosen is None:
        print("no step count separates the learners from the non-learners with that margin")
        return 1
    print(f"suggested: steps {chosen[0]}, min_accuracy {chosen[1]:.2f} (the fewest steps that "
          f"separate; the rubric has steps {task.params.get('steps')}, min_accuracy "
          f"{float(threshold_check.spec['min_accuracy']):.2f})")
    return 0


def run_calibrate(args) -> int:
    rubric = load_rubric(args.rubric)
    try:
        item = rubric.item(args.item)
    except StopIteration:
        raise UsageError(f"{args.rubric.name} has no item {args.item!r}") from None
    if args.seeds < 2:
        raise UsageError("--seeds must be at least 2")
    if not 0 <= args.margin < 0.5:
        raise UsageError("--margin must be between 0 and 0.5")
    threshold_check = next((c for c in item.checks if c.kind == "accuracy_threshold"), None)
    if threshold_check is None:
        raise UsageError(f"item {item.id} has no accuracy_threshold check")
    if args.steps:
        return _sweep(args, rubric, item, threshold_check)
    if args.corpus is not None or args.only:
        raise UsageError("--corpus and --only go with --steps")
    base = engine.plan(rubric, (threshold_check.visibility,))
    task = next(t for t in base if t.item is item)
    seeds = [rubric.seed + i for i in range(args.seeds)]
    tasks = [replace(task, id=f"{item.id}-seed{s}") for s in seeds]
    seed_of = {t.id: s for t, s in zip(tasks, seeds)}
    print(f"Training the reference {len(seeds)} times ({task.params.get('steps')} steps each)...",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        results, _, _ = engine.run_probes(engine.REFERENCE_PATH, tasks, rubric, "basic", Path(tmp),
                                          seed_of=lambda t: seed_of[t.id], trusted=True)
    labels = task.secret["test_labels"]
    accuracies = []
    for t in tasks:
        out = results[t.id]
        if not out.ok:
            raise GraderError(f"the reference failed on seed {seed_of[t.id]}: {out.message}")
        predictions, why = model_predictions(out.arrays, task.secret["test_images"])
        if predictions is None:
            raise GraderError(f"the reference failed on seed {seed_of[t.id]}: {why}")
        accuracies.append(float(np.mean(predictions == labels)))
    acc = np.array(accuracies)
    margin = max(0.02, 3 * float(acc.std()))
    suggested = float(np.floor((acc.min() - margin) * 100) / 100)
    current = float(threshold_check.spec["min_accuracy"])
    for s, a in zip(seeds, accuracies):
        print(f"  seed {s}: test accuracy {a:.4f}")
    print(f"accuracy: min {acc.min():.4f}  mean {acc.mean():.4f}  max {acc.max():.4f}  "
          f"std {acc.std():.4f}")
    print(f"suggested min_accuracy: {suggested:.2f} (the lowest run minus a margin of {margin:.3f})")
    ok = bool((acc >= current).all())
    print(f"current min_accuracy {current:.2f}: the reference "
          f"{'passes on every seed' if ok else 'FAILS on some seeds'}")
    return 0 if ok else 1
