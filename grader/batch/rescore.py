"""``python -m grader rescore DIR``: every score of a batch again, from its stored results.

Nothing runs: no sandbox, no child.  Each student's stored measurements
(``measurements/``) are scored by the current rubric, then the manual layer
and the late policy are applied, and every file of DIR is written again.
When a change needs new runs (an item's inputs, probe or limits, the grader
code a child runs), nothing is written: the command names the items and the
``batch --items`` that reruns them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .. import engine, keys, ledger
from ..defaults import DEFAULT_RUBRIC, default_checks
from ..errors import UsageError
from ..rubric import load_rubric
from .state import MAX_GRADED_BYTES, MAX_STATE_BYTES, Output, _read_json, resume_key

__all__ = ["add_arguments", "run_rescore"]

MAX_SUMMARY_BYTES = 64 * 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .run import add_ledger_arguments
    parser.description = ("Score a graded class again from its stored results, with the current "
                          "rubric, manual scores and late policy: no submission runs.")
    parser.add_argument("out", type=Path, metavar="DIR", help="the folder batch wrote (--out)")
    parser.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    parser.add_argument("--lms", choices=("canvas",), default=None,
                        help="also write canvas_import.csv (remembered from the batch)")
    add_ledger_arguments(parser)


def _graded_key(output: Output, student: str, context: str) -> str:
    for suffix in (".py", ".ipynb"):
        try:
            with open(output.graded / f"{student}{suffix}", "rb") as f:
                data = f.read(MAX_GRADED_BYTES + 1)
        except OSError:
            continue
        return resume_key(data, context) if len(data) <= MAX_GRADED_BYTES else ""
    return ""


def _use_the_class_key(rubric, recorded, out: Path) -> None:
    """Score with the grading key the class was graded with: the hidden inputs come from it.

    A rubric edited in another folder has no key beside it; the one the batch recorded is
    used (rescore never makes a key). A different key there would change every hidden input,
    so it is refused by name rather than taken for "new runs are needed".
    """
    if not isinstance(recorded, dict) or not isinstance(recorded.get("fingerprint"), str):
        return  # graded before keys were recorded: the rubric's own key, as before
    mine = keys.key_path(rubric.path)
    key = keys.read_existing(mine)
    if key is not None:
        if keys.fingerprint(key) != recorded["fingerprint"]:
            raise UsageError(f"{mine}: not the grading key {out} was graded with "
                             f"({recorded.get('path', '?')}): its hidden inputs would all change. "
                             f"Use that key (copy it beside the rubric, or set "
                             f"{keys.KEY_VARIABLE}), or regrade with batch --force")
        return
    theirs = Path(str(recorded.get("path", "")))
    key = keys.read_existing(theirs) if recorded.get("path") else None
    if key is None or keys.fingerprint(key) != recorded["fingerprint"]:
        raise UsageError(f"rescore: {out} was graded with the grading key "
                         f"{recorded.get('path', '?')}, which is gone or changed, and there is "
                         f"no {keys.KEY_NAME} beside {rubric.path}: restore the key (or set "
                         f"{keys.KEY_VARIABLE}), or regrade with batch --force")
    os.environ[keys.KEY_VARIABLE] = str(theirs)


def run_rescore(args) -> int:
    from .run import lock, write_summary
    started = time.monotonic()
    rubric = load_rubric(args.rubric)
    out = args.out.resolve()
    saved = _read_json(out / "state.json", MAX_STATE_BYTES)
    if not isinstance(saved, dict) or not isinstance(saved.get("students"), dict):
        raise UsageError(f"{args.out}: no batch there to rescore (no readable state.json)")
    options = saved.get("options") if isinstance(saved.get("options"), dict) else {}
    isolation = options.get("isolation") if options.get("isolation") in (
        "auto", "full", "basic") else "auto"
    default = ("public", "hidden") if default_checks() == "all" else ("public",)
    visibilities = tuple(v for v in options.get("visibilities") or default
                         if v in ("public", "hidden")) or default
    restore = os.environ.get(keys.KEY_VARIABLE)
    fd = None
    try:
        if "hidden" in visibilities:
            _use_the_class_key(rubric, options.get("grading_key"), args.out)
        fd = lock(out)
        context = ledger.measurement_base(rubric, isolation)
        output = Output(out, rubric, context, args.lms, args.canvas_column, args.anonymise)
        tasks = engine.plan(rubric, visibilities)
        output.plan(tasks, ledger.task_keys(context, tasks), visibilities)
        expected = output.stored_reference()
        scored = sorted(n for n, s in output.students.items() if s["status"].scored)
        needs: dict[str, int] = {}
        for name in scored:
            stale = output.stale(name, _graded_key(output, name, context))
            for item in dict.fromkeys(t.item.id for t in tasks if t.id in stale):
                needs[item] = needs.get(item, 0) + 1
        if expected is None and not needs:
            needs = {t.item.id: len(scored) for t in tasks}
        if needs:
            listed = ", ".join(f"{i} ({n} students)" for i, n in needs.items())
            raise UsageError(f"rescore: new runs are needed for {listed}: their inputs, probe, "
                             f"limits or the grader code they run changed. Run: python -m grader "
                             f"batch SRC --out {args.out} --items {','.join(needs)}")
        output.set_reference(expected)
        if args.manual:
            taken = output.merge_manual(args.manual)
            print(f"rescore: {taken} manual score(s) and comment(s) taken from {args.manual}",
                  file=sys.stderr)
        for warning in output.warnings:
            print(f"  manual: {warning}", file=sys.stderr)
        failed = []
        for name in scored:
            try:
                output.recompose(name)
            except ledger.LedgerError as exc:
                failed.append(f"{name}: {exc}")
        previous = _read_json(out / "summary.json", MAX_SUMMARY_BYTES)
        previous = previous if isinstance(previous, dict) else {}
        ignored = previous.get("ignored") if isinstance(previous.get("ignored"), list) else []
        counts = write_summary(output, str(previous.get("layout", "")), ignored,
                               str(previous.get("source", "")), True,
                               {"seconds": round(time.monotonic() - started, 2),
                                "rescored": len(scored) - len(failed)})
    finally:
        if fd is not None:
            os.close(fd)
        if restore is None:
            os.environ.pop(keys.KEY_VARIABLE, None)
        else:
            os.environ[keys.KEY_VARIABLE] = restore
    print(f"rescore: {len(scored) - len(failed)} students scored again from stored results "
          f"in {time.monotonic() - started:.1f} s, nothing run", file=sys.stderr)
    for line in failed:
        print(f"  not rescored (regrade with batch --only): {line}", file=sys.stderr)
    return 1 if failed or counts.get("ungradable") else 0
