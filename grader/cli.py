"""The command line: ``python -m grader check|watch|calibrate|bundle|gradescope|batch|rescore ...``.

Exit status: 0 full marks, 1 points lost, 2 usage error, bad rubric or any
other grader fault ("ungradable": never reported as a score of zero).

``check`` is the student's command; the others are the instructor's, and
``--help`` lists them only where the reference solution is (the instructor's
repository): a student's copy has none.
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

from . import engine
from .defaults import DEFAULT_RUBRIC, default_checks
from .errors import GraderError, UsageError
from .report import text_header, to_gradescope, to_json, to_text
from .rubric import Rubric, load_rubric


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 2 with one line
        self.print_usage(sys.stderr)
        raise UsageError(message)


STUDENT_COMMANDS = ("check", "watch")


def _parser(instructor: bool | None = None) -> argparse.ArgumentParser:
    """Every command; ``--help`` lists the instructor's only when ``instructor`` (default:
    the reference solution is here). Hidden, they still run (Gradescope's autograder
    has no reference either, and calls ``gradescope``)."""
    if instructor is None:
        instructor = engine.REFERENCE_PATH.is_file()
    parser = _Parser(prog="python -m grader", description="Grade the TensorFlow MNIST tutorial.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar=None if instructor else "{%s}" % ",".join(STUDENT_COMMANDS))

    def command(name: str, help: str) -> argparse.ArgumentParser:
        if instructor or name in STUDENT_COMMANDS:
            return sub.add_parser(name, help=help)
        return sub.add_parser(name, description=help)  # no help: not in the list

    check = command("check", "grade one submission")
    check.add_argument("file", type=Path)
    check.add_argument("--only", action="append", metavar="ITEM", default=[],
                       help="grade just this item (e.g. Q5); repeat it or separate ids by "
                            "commas for several")
    check.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    check.add_argument("--format", choices=("text", "json", "gradescope"), default="text")
    check.add_argument("--checks", choices=("all", "public"), default=None,
                       help="all (instructor grading; the default where the reference is "
                            "present) or public (the student's self-check)")
    check.add_argument("--isolation", choices=("auto", "full", "basic"), default="auto")
    check.add_argument("--output", type=Path, help="write the report here instead of stdout")
    check.add_argument("--progress", choices=("auto", "live", "lines", "off"), default="auto",
                       help="show items as they are graded, on stderr (text format): redrawn "
                            "in place (live, auto on a terminal), plain lines (lines, auto "
                            "elsewhere) or not at all")
    check.add_argument("--verbose", "-v", action="store_true",
                       help="also say how the grade ran (isolation, start-up)")

    watch = command("watch", "grade a submission again each time it is saved "
                             "(TensorFlow stays warm between grades)")
    watch.add_argument("file", type=Path)
    watch.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    watch.add_argument("--checks", choices=("all", "public"), default=None)
    watch.add_argument("--isolation", choices=("auto", "full", "basic"), default="auto")

    cal = command("calibrate", "run the reference over many seeds and suggest "
                               "the model's accuracy threshold")
    cal.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    cal.add_argument("--seeds", type=int, default=8)
    cal.add_argument("--item", default="model")
    cal.add_argument("--steps", metavar="N,N,...",
                     help="train at each of these step counts and print which separates the "
                          "pipelines that learn from those that do not")
    cal.add_argument("--corpus", type=Path, metavar="DIR",
                     help="with --steps: also the fixtures of this corpus (tests/corpus)")
    cal.add_argument("--only", metavar="NAME,...", help="with --corpus: only these fixtures")
    cal.add_argument("--jobs", type=int, default=1,
                     help="with --steps: train this many pipelines at once (default 1)")
    cal.add_argument("--margin", type=float, default=0.05,
                     help="with --steps: the least distance of the threshold from every "
                          "pipeline (default 0.05)")

    bundle = command("bundle", "build dist/student.zip or dist/gradescope_autograder.zip")
    bundle.add_argument("kind", choices=("student", "gradescope"))
    bundle.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    bundle.add_argument("--out", type=Path)

    gs = command("gradescope", "grade /autograder/submission into "
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
        add_arguments(command("batch", "grade a whole class"))
        from .batch.rescore import add_arguments as add_rescore
        add_rescore(command("rescore", "score a graded class again from its stored results "
                                       "(no submission runs)"))
        sim = command("similarity", "rank the pairs of a graded class by similar code and "
                                    "shared wrong behaviour")
        sim.add_argument("out", type=Path, metavar="DIR", help="a folder batch wrote")
        sim.add_argument("--threshold", type=float, default=None,
                         help="flag pairs at or over this score (default 0.6)")
    return parser


def _only(rubric: Rubric, asked: list[str]) -> tuple[Rubric, tuple[str, ...]]:
    """``rubric`` cut to the items ``--only`` names (all of them when none is named)."""
    ids = [i.strip() for arg in asked for i in arg.split(",") if i.strip()]
    if not ids:
        if asked:
            raise UsageError("--only needs an item id")
        return rubric, ()
    valid = [item.id for item in rubric.items]
    unknown = [i for i in dict.fromkeys(ids) if i not in valid]
    if unknown:
        raise UsageError(f"--only: no item {', '.join(map(repr, unknown))} in "
                         f"{rubric.path.name}; the items are {', '.join(valid)}")
    chosen = tuple(item for item in rubric.items if item.id in ids)
    return replace(rubric, items=chosen), tuple(item.id for item in chosen)


def _live_view(args, rubric: Rubric, visibilities: tuple[str, ...], only: tuple[str, ...]):
    """The live view of ``check``, or None (other formats, ``--progress off``)."""
    if args.format != "text" or args.progress == "off":
        return None
    from .live import LiveView
    redraw = args.progress == "live" or (args.progress == "auto" and _is_terminal(sys.stderr))
    complete = set(visibilities) >= {"public", "hidden"} and rubric.full_total == rubric.max_total
    max_total = sum(item.points_for(v) for item in rubric.items
                    for v in item.visibilities(visibilities))
    header = text_header(str(args.file), "all" if complete else "public",
                         round(max_total, 6), rubric.full_total, only)
    return LiveView(sys.stderr, header, [(item.id, item.title) for item in rubric.items], redraw)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run_check(args) -> int:
    rubric, only = _only(load_rubric(args.rubric), args.only)
    checks = args.checks or default_checks()
    visibilities = ("public", "hidden") if checks == "all" else ("public",)
    started = time.monotonic()
    if not args.file.is_file():
        raise UsageError(f"{args.file}: no such file")
    view = _live_view(args, rubric, visibilities, only)
    try:
        report = engine.grade(args.file, rubric, visibilities, isolation=args.isolation,
                              progress=view)
    finally:
        if view is not None:
            view.close()
    report = replace(report, only=only)
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
        text = to_text(report, details=args.verbose)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return report.exit_code


def run_watch(args) -> int:
    from .reuse import ModelReuse
    from .watch import Watcher
    rubric = load_rubric(args.rubric)
    checks = args.checks or default_checks()
    visibilities = ("public", "hidden") if checks == "all" else ("public",)
    engine.prestart(rubric)  # TensorFlow imports while the inputs are prepared, once
    tasks = engine.plan(rubric, visibilities)
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        expected = engine.expected_outputs(rubric, tasks, Path(tmp))

    reuse = ModelReuse()  # the model's result while the code it runs is unchanged

    def grade_once(path: Path) -> tuple[str, int]:
        try:
            report = engine.grade(path, rubric, visibilities, isolation=args.isolation,
                                  prepared=(tasks, expected), reuse=reuse)
        except GraderError as exc:  # this save could not be graded; the next one may be
            label = "usage error" if isinstance(exc, UsageError) else "ungradable"
            return f"{label}: {exc}\n", exc.exit_code
        return to_text(report), report.exit_code

    return Watcher(args.file, args.rubric, grade_once).run()


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
        if args.command == "watch":
            return run_watch(args)
        if args.command == "calibrate":
            from .calibrate import run_calibrate
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
