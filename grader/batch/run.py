"""The batch itself: the command line, the plan of work, and the local worker pool."""

from __future__ import annotations

import argparse
import fcntl
import os
import queue
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from .. import engine, keys, ledger, sandbox, summary
from ..defaults import DEFAULT_RUBRIC, default_checks
from ..errors import UngradableError, UsageError
from ..files import write_atomic
from ..outcome import RowStatus
from ..rubric import Rubric, load_rubric
from .discovery import Discovery, Submission, discover, open_source
from .grading import MEMORY_PER_WORKER, grade_one
from .progress import Interrupt, Progress, print_list
from .state import MAX_GRADED_BYTES, Output, graded_file, resume_key

__all__ = ["add_arguments", "item_list", "run_batch", "write_summary"]

_EPILOG = """\
layouts of SRC (detected; they may be mixed):
  files        <student>.py or <student>.ipynb, one per student
  folders      <student>/... holding tensorflow_tutorial.py (or .ipynb, or one .py)
  gradescope   submission_metadata.yml beside submission_<id>/ folders
  canvas       <name>[_LATE]_<userid>_<submissionid>_<file>
  A .zip of any of them; a single folder wrapping everything is opened.

DIR gets gradebook.csv (student,user_id,late,source,<items>,total,status,raw,
penalty,hours_late,pending,overrides,review,flags), reports/<student>.json and
.txt, submissions/<student>.py (the file graded), measurements/ (what each
score was computed from: `rescore DIR` scores it again with no new run),
review/<item>.html and .csv for items graded by hand, feedback.zip,
summary.json, score_distribution.png, summary.html, state.json, and with
--lms canvas canvas_import.csv (Canvas: Grades > Import).

A rerun runs again only what changed: a submission's new bytes, or the items
whose inputs, probes or limits changed; a rubric change that needs no new
run (points, weights, tolerances, thresholds) is a rescore of stored results.
--items Q5,Q6 reruns those items for everyone; --only NAME... regrades those
students; --force regrades everything. Manual scores (--manual FILE, columns
student,item,points,comment) are kept in DIR/manual.json and survive them all.

status: graded, import-error (the file does not import), timeout, crashed
(scored), ungradable (a grader fault: no score),
pending (interrupted before its turn), skipped-* (not graded: the reason is in
summary.json and reports/<student>.txt).

--ray grades on Ray instead of local workers: with no ADDRESS on a Ray
instance started for this run, with auto or host:port (or ray://host:port)
on a running cluster. Put --ray after SRC. Same output, same scores.

exit status: 0 done, 1 done but some ungradable, 2 usage error or a fault that
affects every submission (nothing graded), 130 interrupted."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Grade a whole class: a gradebook, feedback and a summary."
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("src", type=Path, metavar="SRC",
                        help="a folder or a .zip: one file or folder per student, or a "
                             "Gradescope or Canvas export")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where the gradebook, reports and summary go")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="submissions graded at once (default: the number of cores)")
    parser.add_argument("--force", action="store_true",
                        help="regrade submissions already graded with the same content")
    parser.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    parser.add_argument("--isolation", choices=("auto", "full", "basic"), default="auto")
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="grade on Ray: no ADDRESS starts a local Ray instance for this run; "
                             "auto, host:port or ray://host:port joins a running cluster "
                             "(--jobs then caps the grades at once; default: its CPUs)")
    parser.add_argument("--retries", type=int, default=2, metavar="N",
                        help="with --ray: times a grade is retried when its Ray worker or node "
                             "dies (default: 2); then the row is ungradable")
    parser.add_argument("--no-similarity", dest="similarity", action="store_false",
                        help="do not compare the class's submissions (integrity.csv and the "
                             "Similarity section of summary.html)")
    parser.add_argument("--lms", choices=("canvas",), default=None,
                        help="also write the LMS's gradebook import: canvas_import.csv "
                             "(rows with a Canvas user id; the column is the rubric's assignment)")
    add_ledger_arguments(parser)
    parser.add_argument("--items", type=item_list, action="extend", default=[], metavar="Q5,Q6",
                        help="run these items again for every student, even if nothing changed "
                             "(after SRC)")
    parser.add_argument("--only", nargs="+", action="extend", default=[], metavar="NAME",
                        help="regrade only these students (row names of gradebook.csv; after SRC)")


def add_ledger_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``batch`` and ``rescore`` share: the manual layer and the LMS files."""
    parser.add_argument("--manual", type=Path, metavar="FILE",
                        help="merge manual scores and comments (CSV: student,item,points,comment; "
                             "any item: an override); kept in DIR/manual.json for later runs")
    parser.add_argument("--canvas-column", metavar="NAME",
                        help="the assignment column of canvas_import.csv (default: the rubric's "
                             "assignment); remembered in DIR")
    parser.add_argument("--anonymise", action="store_true", default=None,
                        help="review pages name students by an anonymous id (remembered in DIR)")


def item_list(text: str) -> list[str]:
    """``Q5,Q6`` as a list of item ids."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:  # a cgroup CPU quota ("max 100000" when there is none)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _default_jobs() -> tuple[int, str]:
    cores = _cores()
    try:
        with open("/proc/meminfo") as f:
            meminfo = dict(line.split(":", 1) for line in f)
        available = int(meminfo["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return cores, f"{cores} cores"
    by_memory = max(1, available // MEMORY_PER_WORKER)
    if by_memory < cores:
        return int(by_memory), f"{cores} cores, but memory for {by_memory}"
    return cores, f"{cores} cores"


def lock(out: Path):
    """Lock DIR itself for this batch: nothing to clean up, released when the process ends."""
    (out / ".batch.lock").unlink(missing_ok=True)   # left by older versions
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"{out}: another batch is writing there now") from None
    return fd


def run_batch(args) -> int:
    rubric = load_rubric(args.rubric)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if getattr(args, "ray", None) is not None:
        from . import ray
        ray.check_address(args.ray)
        if args.retries < 0:
            raise UsageError("--retries must be at least 0")
    jobs, why_jobs = (args.jobs, "--jobs") if args.jobs else _default_jobs()
    visibilities = ("public", "hidden") if default_checks() == "all" else ("public",)
    out = args.out.resolve()
    if args.src.resolve() == out:
        raise UsageError("--out must not be SRC itself")
    out.mkdir(parents=True, exist_ok=True)
    fd = lock(out)
    try:
        with tempfile.TemporaryDirectory(prefix="grader-batch-") as scratch:
            root, left_out = open_source(args.src, Path(scratch))
            uploads = Path(scratch) / "uploads"
            uploads.mkdir()
            found = discover(root, rubric, exclude=out, scratch=uploads)
            found.ignored[:0] = left_out
            return _run(args, rubric, visibilities, jobs, why_jobs, out, found)
    finally:
        os.close(fd)


def _checked_items(args, rubric: Rubric) -> set[str]:
    known = [i.id for i in rubric.items]
    unknown = [i for i in args.items if i not in known]
    if unknown:
        raise UsageError(f"--items: {', '.join(unknown)} is not an item of the rubric "
                         f"({', '.join(known)})")
    return set(args.items)


def note_grading(output: Output, isolation: str, visibilities) -> None:
    """Record how the class is graded: the isolation, the visibilities and which grading
    key the hidden inputs come from (a fingerprint: rescore checks it, see rescore.py)."""
    key = None
    if "hidden" in visibilities:
        key = {"path": str(keys.key_path(output.rubric.path)),
               "fingerprint": keys.fingerprint(keys.load_or_create(output.rubric.path))}
    output.options.update(isolation=isolation, visibilities=list(visibilities), grading_key=key)


def _run(args, rubric: Rubric, visibilities, jobs: int, why_jobs: str, out: Path,
         found: Discovery) -> int:
    started = time.monotonic()
    items = _checked_items(args, rubric)
    only = set(getattr(args, "only", None) or [])
    missing = sorted(only - {s.student for s in found.submissions})
    if missing:
        raise UsageError(f"--only: no student {', '.join(missing)} in {args.src}")
    context = ledger.measurement_base(rubric, args.isolation)
    output = Output(out, rubric, context, getattr(args, "lms", None),
                    getattr(args, "canvas_column", None), getattr(args, "anonymise", None))
    note_grading(output, args.isolation, visibilities)
    if not only:
        output.forget({s.student for s in found.submissions})
    tasks = engine.plan(rubric, visibilities)
    output.plan(tasks, ledger.task_keys(context, tasks), visibilities)
    everything = [t.id for t in tasks]
    todo: list[tuple[Submission, str, Path]] = []
    recompose: list[tuple[Submission, str, Path]] = []
    reused = 0
    rerun_items: dict[str, int] = {}
    for sub in found.submissions:
        if only and sub.student not in only:
            if sub.student in output.students and output.students[sub.student]["status"].scored:
                recompose.append((sub, "", Path()))
            continue
        if sub.status is not None:
            output.record_skip(sub)
            continue
        try:
            graded, suffix = graded_file(sub)
        except Exception as exc:   # this student's alone: the engine reads it again and says why
            key = resume_key(f"unreadable: {type(exc).__name__}".encode(), context)
            for stale in (".py", ".ipynb"):
                (output.graded / f"{sub.student}{stale}").unlink(missing_ok=True)
            output.mark_pending(sub, key)
            todo.append((sub, key, sub.path))
            continue
        # (a notebook that cannot be read is graded as it is: the engine says why, in its row)
        if suffix == ".py" and len(graded) > MAX_GRADED_BYTES:
            output.record_skip(replace(sub, status=RowStatus.SKIPPED_TOO_LARGE,
                                       reason=f"more than {MAX_GRADED_BYTES // 2**20} MiB of Python"))
            continue
        key = resume_key(graded, context)
        copy = output.graded / f"{sub.student}{suffix}"
        (output.graded / f"{sub.student}{'.py' if suffix == '.ipynb' else '.ipynb'}").unlink(
            missing_ok=True)
        stale = everything if args.force or only else output.stale(sub.student, key)
        if items and not args.force:
            stale = [t.id for t in tasks if t.id in stale or t.item.id in items]
        if not stale and copy.is_file() and copy.read_bytes() == graded:
            output.students[sub.student].update(info=sub.info, source=sub.source)
            recompose.append((sub, key, copy))
            continue
        if not copy.is_file() or copy.read_bytes() != graded:
            write_atomic(copy, graded)
            stale = everything
        output.mark_pending(sub, key)
        if len(stale) < len(everything):
            output.partial[sub.student] = stale
            for item in dict.fromkeys(t.item.id for t in tasks if t.id in stale):
                rerun_items[item] = rerun_items.get(item, 0) + 1
        todo.append((sub, key, copy))
    if getattr(args, "manual", None):
        taken = output.merge_manual(args.manual)
        print(f"batch: {taken} manual score(s) and comment(s) taken from {args.manual}",
              file=sys.stderr)
    print_list("manual:", output.warnings)
    if todo or recompose:
        _reference(output, rubric, tasks)
    for sub, key, copy in recompose:   # unchanged measurements: scored again, no child
        try:
            output.recompose(sub.student)
            reused += 1
        except ledger.LedgerError as exc:
            if not copy.name:   # left out by --only: it keeps its row
                print(f"batch: {sub.student} keeps its row ({exc})", file=sys.stderr)
                continue
            output.mark_pending(sub, "")
            todo.append((sub, key, copy))
    output.save()  # skips, and pending rows for what changed, before anything slow
    skipped = [(name, s) for name, s in sorted(output.students.items()) if s["status"].skipped]
    print(f"batch: {len(found.submissions)} students ({found.layout} layout): {len(todo)} to grade, "
          f"{reused} unchanged since graded, {len(skipped)} skipped"
          + (f", {len(found.ignored)} files ignored" if found.ignored else ""), file=sys.stderr)
    if rerun_items:
        print("batch: run again only for "
              + ", ".join(f"{i} ({n} students)" for i, n in sorted(rerun_items.items())),
              file=sys.stderr)
    print_list("skipped", [f"{name} ({s['source']}): {s['reason']}" for name, s in skipped])
    print_list("ignored", [f"{i['path']}: {i['reason']}" for i in found.ignored])
    if output.lms == "canvas":
        left = sorted(n for n, s in output.students.items() if not s.get("info", {}).get(
            "canvas_user_id") and not s.get("info", {}).get("email"))
        print_list("not in canvas_import.csv (no Canvas user id or email)", left)
    interrupted = False
    elapsed_grading = 0.0
    cluster = None
    if todo and getattr(args, "ray", None) is not None:
        from . import ray   # joins or starts Ray first: a bad address fails in seconds
        cluster = ray.connect(args.ray, jobs if args.ray == ray.LOCAL else None, rubric)
    try:
        if todo:
            interrupted, elapsed_grading, jobs = _grade_todo(args, rubric, visibilities, jobs,
                                                             why_jobs, output, todo, cluster)
    finally:
        if cluster is not None:
            cluster.close()
    _similarity(out, getattr(args, "similarity", True) and not interrupted)
    counts = write_summary(output, found.layout, found.ignored, str(args.src), not interrupted,
                           {"seconds": round(time.monotonic() - started, 2),
                            "grading_seconds": round(elapsed_grading, 2),
                            "graded_now": len(todo) if not interrupted else None,
                            "unchanged": reused, "jobs": jobs})
    if interrupted:
        print("batch: interrupted; the gradebook holds what finished, a rerun goes on from there",
              file=sys.stderr)
        return 130
    return 1 if counts.get(RowStatus.UNGRADABLE) else 0


def _similarity(out: Path, wanted: bool) -> None:
    """integrity.csv and summary.html's Similarity section, on the driver, from what is stored."""
    from . import similarity
    if not wanted:
        similarity.forget(out)
        return
    if not similarity.available():   # the grades stand without it
        similarity.forget(out)
        print(f"batch: similarity not compared: {similarity.MISSING}", file=sys.stderr)
        return
    started = time.monotonic()
    pairs, _ = similarity.run(out)
    flagged = sum(p.score >= similarity.DEFAULT_THRESHOLD for p in pairs)
    print(f"batch: similarity: {flagged} pair(s) at or over {similarity.DEFAULT_THRESHOLD:g} "
          f"in {out / 'integrity.csv'} ({time.monotonic() - started:.1f} s)", file=sys.stderr)


def _reference(output: Output, rubric: Rubric, tasks: list) -> None:
    """The reference's outputs: stored in DIR under the current keys, else the cache's
    (or the reference run now)."""
    expected = output.stored_reference()
    if expected is None:
        with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
            os.chmod(tmp, 0o711)
            expected = engine.expected_outputs(rubric, tasks, Path(tmp))
    output.set_reference(expected)


def write_summary(output: Output, layout: str, ignored: list, source: str, complete: bool,
                  timing: dict) -> dict:
    """The gradebook, the LMS files, the review pages and the summary; the counts by status."""
    output.finish()
    report = summary.build(output.rubric, output.students, layout=layout, ignored=ignored,
                           source=source, complete=complete, timing=timing)
    summary.write_all(output.out, report, output.students, output.rubric)
    counts = report["counts"]
    written = ["gradebook.csv"] + (["canvas_import.csv"] if output.lms == "canvas" else [])
    print(f"{'batch' if timing.get('jobs') else 'rescore'}: "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
          + f"; wrote {', '.join(str(output.out / w) for w in written)} and "
          f"{output.out / 'summary.html'}", file=sys.stderr)
    return counts


def _grade_todo(args, rubric: Rubric, visibilities, jobs: int, why_jobs: str, output: Output,
                todo: list, cluster) -> tuple[bool, float, int]:
    """Grade what changed, locally or on Ray: (interrupted, seconds, grades at once)."""
    level = _prepare(rubric, visibilities, args.isolation, warm=cluster is None)
    if cluster is not None:
        jobs = min(args.jobs or cluster.cpus, len(todo))
        print(f"batch: on {cluster.description}; {jobs} grade(s) at once, isolation decided "
              f"on each node (here: {level}), {rubric.limits['threads']} TensorFlow "
              "thread(s) each", file=sys.stderr)
    else:
        jobs = min(jobs, len(todo))
        print(f"batch: {jobs} worker{'s' * (jobs > 1)} ({why_jobs}), isolation {level}, "
              f"{rubric.limits['threads']} TensorFlow thread(s) each", file=sys.stderr)
    if cluster is None and visibilities == ("public", "hidden") and level != "full":
        print("WARNING: grading without full isolation (basic): submissions run as this "
              "user. Grade untrusted work as root on Linux.", file=sys.stderr)
    # longest first (as last time), so that no long one is left to run alone at the end
    todo.sort(key=lambda t: -float(output.students.get(t[0].student, {}).get("seconds") or 0))
    output.save()
    grading_started = time.monotonic()
    if cluster is not None:
        from . import ray
        interrupted = ray.grade_all(cluster, todo, output, rubric, visibilities,
                                    args.isolation, jobs, args.retries)
    else:
        interrupted = grade_all(todo, output, rubric, visibilities, args.isolation, jobs)
    return interrupted, time.monotonic() - grading_started, jobs


def _prepare(rubric: Rubric, visibilities, isolation: str, warm: bool = True) -> str:
    """Checks that concern every submission, before any is graded (exit 2 if one fails).

    It also warms what engine.grade shares between threads: the MNIST loader
    module, the reference's expected values and, with ``warm`` (local
    workers; on Ray each node has its own), the zygote, one for the whole
    worker pool (TensorFlow imports there meanwhile).
    """
    if warm:
        engine.prestart(rubric)
    try:
        level, _ = sandbox.detect_isolation(isolation)
    except sandbox.SandboxError as exc:
        raise UngradableError(str(exc)) from None
    tasks = engine.plan(rubric, visibilities)
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        os.chmod(tmp, 0o711)
        engine.expected_outputs(rubric, tasks, Path(tmp))
    return level


def grade_all(todo, output: Output, rubric: Rubric, visibilities, isolation: str,
              jobs: int) -> bool:
    """Grade on ``jobs`` threads; returns True when interrupted."""
    waiting: queue.Queue = queue.Queue()
    for item in todo:
        waiting.put(item)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                sub, key, path = waiting.get_nowait()
            except queue.Empty:
                return
            subset = output.partial.get(sub.student)
            prepared = None
            if output.tasks and output.expected:
                prepared = ([t for t in output.tasks if subset is None or t.id in subset],
                            output.expected)
            results.put((sub, key, grade_one(path, rubric, visibilities, isolation, prepared)))

    progress = Progress(len(todo), jobs)
    threads = [threading.Thread(target=work, name=f"batch-worker-{i}", daemon=True)
               for i in range(jobs)]
    with Interrupt() as interrupt:
        for t in threads:
            t.start()
        finished = 0
        while finished < len(todo) and not interrupt.event.is_set():
            try:
                sub, key, outcome = results.get(timeout=0.2)
            except queue.Empty:
                progress.draw()
                continue
            entry = output.record(sub, key, outcome)
            output.save()
            finished += 1
            progress.finished(sub.student, entry)
        progress.close()
        if not interrupt.event.is_set():
            return False
        stop.set()
        running = sum(t.is_alive() for t in threads)
        if running:
            print(f"batch: interrupted; waiting for the {running} grade(s) running now to stop "
                  "(their results are dropped; Ctrl-C again to quit at once)",
                  file=sys.stderr, flush=True)
        for t in threads:
            t.join()
    return True
