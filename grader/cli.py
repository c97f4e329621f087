"""The command line: ``python -m grader check|calibrate|bundle|gradescope|batch|rescore ...``.

Exit status: 0 full marks, 1 points lost, 2 usage error, bad rubric or any
other grader fault ("ungradable": never reported as a score of zero).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import engine
from .defaults import DEFAULT_RUBRIC, default_checks
from .errors import GraderError, UsageError
from .report import to_gradescope, to_json, to_text
from .rubric import load_rubric


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 2 with one line
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m grader", description="Grade the TensorFlow MNIST tutorial.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = sub.add_parser("check", help="grade one submission")
    check.add_argument("file", type=Path)
    check.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    check.add_argument("--format", choices=("text", "json", "gradescope"), default="text")
    check.add_argument("--checks", choices=("all", "public"), default=None,
                       help="all (instructor grading; the default where the reference is "
                            "present) or public (the student's self-check)")
    check.add_argument("--isolation", choices=("auto", "full", "basic"), default="auto")
    check.add_argument("--output", type=Path, help="write the report here instead of stdout")

    cal = sub.add_parser("calibrate", help="run the reference over many seeds and suggest "
                                           "the model's accuracy threshold")
    cal.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    cal.add_argument("--seeds", type=int, default=8)
    cal.add_argument("--item", default="model")

    bundle = sub.add_parser("bundle", help="build dist/student.zip or "
                                           "dist/gradescope_autograder.zip")
    bundle.add_argument("kind", choices=("student", "gradescope"))
    bundle.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    bundle.add_argument("--out", type=Path)

    gs = sub.add_parser("gradescope", help="grade /autograder/submission into "
                                           "/autograder/results/results.json (run_autograder), "
                                           "or try the autograder zip locally (--local)")
    gs.add_argument("--root", type=Path, default=Path("/autograder"),
                    help="the folder laid out like Gradescope's (run_autograder passes it)")
    gs.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    gs.add_argument("--local", type=Path, metavar="SUBMISSION",
                    help="try the autograder before uploading it: run the zip's own "
                         "run_autograder on SUBMISSION (a file or a folder) in a temporary "
                         "folder laid out like /autograder, and print results.json")
    gs.add_argument("--zip", type=Path, help="with --local: this autograder zip (default: "
                                             "build one from this repository first)")
    gs.add_argument("--keep", type=Path, metavar="DIR",
                    help="with --local: build the /autograder layout in DIR and keep it")

    try:
        from .batch import add_arguments
    except ImportError:
        pass
    else:
        add_arguments(sub.add_parser("batch", help="grade a whole class"))
        from .batch.rescore import add_arguments as add_rescore
        add_rescore(sub.add_parser("rescore", help="score a graded class again from its stored "
                                                   "results (no submission runs)"))
        sim = sub.add_parser("similarity", help="rank the pairs of a graded class by similar "
                                                "code and shared wrong behaviour")
        sim.add_argument("out", type=Path, metavar="DIR", help="a folder batch wrote")
        sim.add_argument("--threshold", type=float, default=None,
                         help="flag pairs at or over this score (default 0.6)")
    return parser


def run_check(args) -> int:
    rubric = load_rubric(args.rubric)
    checks = args.checks or default_checks()
    visibilities = ("public", "hidden") if checks == "all" else ("public",)
    started = time.monotonic()
    report = engine.grade(args.file, rubric, visibilities, isolation=args.isolation)
    if checks == "all" and report.isolation != "full":
        detail = f"; {report.confinement}" if report.confinement else ""
        print(f"WARNING: grading without full isolation ({report.isolation}{detail}): the "
              "submission ran as this user. Grade untrusted work as root on Linux.",
              file=sys.stderr)
    if args.format == "json":
        text = to_json(report)
    elif args.format == "gradescope":
        text = json.dumps(to_gradescope(report, rubric.gradescope_hidden_visibility,
                                        execution_time=time.monotonic() - started),
                          indent=2) + "\n"
    else:
        text = to_text(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return report.exit_code


def run_calibrate(args) -> int:
    rubric = load_rubric(args.rubric)
    try:
        item = rubric.item(args.item)
    except StopIteration:
        raise UsageError(f"{args.rubric.name} has no item {args.item!r}") from None
    if args.seeds < 2:
        raise UsageError("--seeds must be at least 2")
    threshold_check = next((c for c in item.checks if c.kind == "accuracy_threshold"), None)
    if threshold_check is None:
        raise UsageError(f"item {item.id} has no accuracy_threshold check")
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
        accuracies.append(float(np.mean(out.array("predictions") == labels)))
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


def run_bundle(args) -> int:
    from . import distribute
    if not engine.REFERENCE_PATH.is_file():
        raise UsageError("bundles are built from the instructor's repository (no reference here)")
    load_rubric(args.rubric)  # validate first
    if args.kind == "student":
        out = distribute.student_bundle(args.out or engine.PROJECT_ROOT / "dist" / "student.zip",
                                        args.rubric)
    else:
        out = distribute.gradescope_bundle(
            args.out or engine.PROJECT_ROOT / "dist" / "gradescope_autograder.zip", args.rubric)
    print(f"wrote {out}")
    return 0


def run_gradescope(args) -> int:
    from . import distribute
    if args.local is None:
        if args.zip or args.keep:
            raise UsageError("--zip and --keep go with --local")
        return distribute.run_gradescope(args.root, args.rubric)
    if args.zip is None and not engine.REFERENCE_PATH.is_file():
        raise UsageError("no reference here to build the autograder from: pass --zip")
    load_rubric(args.rubric)  # validate first
    code, results, root = distribute.try_locally(args.local, args.rubric, args.zip, args.keep)
    sys.stdout.write(distribute.describe_results(results))
    where = f"kept in {root}" if args.keep else "in a temporary folder, removed"
    print(f"run_autograder exited {code}; the /autograder layout was {where}.", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "check":
            return run_check(args)
        if args.command == "calibrate":
            return run_calibrate(args)
        if args.command == "bundle":
            return run_bundle(args)
        if args.command == "gradescope":
            return run_gradescope(args)
        if args.command == "rescore":
            from .batch.rescore import run_rescore
            return run_rescore(args)
        if args.command == "similarity":
            from .batch.similarity import run_command
            return run_command(args.out, args.threshold)
        from .batch import run_batch
        return run_batch(args)
    except GraderError as exc:
        label = "usage error" if isinstance(exc, UsageError) else "ungradable"
        print(f"{label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, still "ungradable"
        if os.environ.get("GRADER_DEBUG"):
            raise
        print(f"ungradable: internal grader error: {type(exc).__name__}: {exc} "
              "(set GRADER_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
