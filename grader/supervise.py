"""Running the tasks of a grade in sandboxed children, one after another, each
item on its own clock (see :func:`probe`)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import protocol, zygote
from .child import _death, _startup, _supervise
from .errors import UngradableError
from .outcome import ChildEnd, ProbeOutput
from .plan import Task
from .probes import PROBES
from .progress import IMPORT, STARTUP, Watch
from .rubric import Rubric
from .timings import measured, watched


@dataclass(frozen=True)
class Probed:
    """What running the probes gave: outputs by task id, and how they ran."""
    results: dict
    level: str
    confinement: str
    startup: str                # "zygote" (every child forked warm) or "fresh"
    failure: ProbeOutput | None = None  # what a model task after these gets, if the run stopped


def run_probes(source: Path, tasks: list[Task], rubric: Rubric, isolation: str,
               workroot: Path, seed_of, trusted: bool = False) -> tuple[dict, str, str]:
    """Run every task on ``source`` in sandboxed children.

    Returns ({task id: output}, isolation level, confinement detail).
    """
    probed = probe(source, tasks, rubric, isolation, workroot, seed_of, trusted)
    return probed.results, probed.level, probed.confinement


def probe(source: Path, tasks: list[Task], rubric: Rubric, isolation: str, workroot: Path,
          seed_of, trusted: bool = False, startup: str | None = None,
          watch: Watch | None = None, reused: dict | None = None) -> Probed:
    """Run every task on ``source`` in sandboxed children (see :class:`Probed`).

    ``startup``: ``auto`` forks each child from a zygote where that is safe
    (see grader/zygote.py), ``fresh`` starts a new Python each time, as does
    ``auto`` when the zygote is unavailable. Waiting for the zygote to import
    TensorFlow is the grader's time, not the submission's: the clock starts
    after it.

    One child runs the tasks in order.  When it dies, misbehaves or overruns
    an item's budget, that item gets the failure and a fresh child takes the
    rest.  The whole run has a hard cap: start-up, import and every item's
    budget added up, however many children it takes.

    With a zygote and a core to spare, the ``model`` item runs in children of
    its own beside the others, on the same clock model (its own phases and
    budgets, the same hard cap), and its result is what the one-child order
    would give: when an earlier item's failure means it is not run (the
    import failed, a pipeline function hung, the total time ran out), its
    children are stopped and it gets that failure.

    ``watch`` hears of every phase as it starts and of every task's output
    once it is final (a ``model`` task run beside the others: at the end).

    ``reused``: outputs of ``model`` tasks from an earlier grade of the same code
    (grader/reuse.py). Those tasks are not run; each gets its reused output unless the
    one-child order would not have run it, and then that failure, as above.
    """
    watch = watch or Watch()
    reused = {t.id: reused[t.id] for t in tasks
              if reused and t.id in reused and PROBES[t.item.probe].whole}
    if reused and len(reused) < len(tasks):  # something runs: the import is checked again
        done = probe(source, [t for t in tasks if t.id not in reused], rubric, isolation,
                     workroot, seed_of, trusted, startup, watch)
        results = dict(done.results)
        for t in tasks:
            if t.id in reused:
                results[t.id] = done.failure or reused[t.id]
                watch.result(t.id, results[t.id])
        return Probed({t.id: results[t.id] for t in tasks}, done.level, done.confinement,
                      done.startup, done.failure)
    lim = rubric.limits
    with measured("zygote wait"):
        warm = _startup(rubric, startup or zygote.requested_mode())
    deadline = time.monotonic() + float(lim["startup_seconds"]) + float(lim["import_seconds"]) \
        + sum(float(t.item.budget_seconds) for t in tasks)
    # What all children together may send, taken live by the groups side by side: a hostile
    # one cannot fill the parent's memory (each child also has 1 MiB of its own, child.OWN_BYTES).
    budget = protocol.ByteBudget(4 * int(lim["result_mib"]) * 2**20)
    runner = _GroupRun(source, rubric, isolation, workroot, seed_of, deadline, budget, warm,
                       trusted, watched(watch, "main"))
    with _concurrency() as running:
        model = [t for t in tasks if PROBES[t.item.probe].whole]
        others = [t for t in tasks if not PROBES[t.item.probe].whole]
        if warm is None or not model or not others or _cores() < 2 * running:
            done = runner.run(tasks)
            return Probed(done.results, done.level, done.confinement, done.startup, done.failure)
        cancel = threading.Event()
        side: list = []
        beside = watched(_Beside(watch), "model")  # here: the grade's timings are this thread's

        def run_model() -> None:
            try:
                side.append(replace(runner, watch=beside).run(model, cancel))
            except BaseException as exc:  # raised again below
                side.append(exc)

        thread = threading.Thread(target=run_model, name="grader-model", daemon=True)
        thread.start()
        try:
            main = runner.run(others, on_stop=cancel)
        except BaseException:
            cancel.set()
            raise
        finally:
            thread.join()
    side_run = side[0]
    if isinstance(side_run, BaseException):
        raise side_run
    results = dict(main.results)
    for t in model:
        results[t.id] = main.stopped_model(t) or side_run.results[t.id]
        watch.result(t.id, results[t.id])
    startups = {main.startup, side_run.startup}
    return Probed({t.id: results[t.id] for t in tasks}, main.level, main.confinement,
                  "zygote" if startups == {"zygote"} else "fresh", main.failure)


_running = 0
_running_lock = threading.Lock()


class _concurrency:
    """How many runs of this process are probing now, this one included."""

    def __enter__(self) -> int:
        global _running
        with _running_lock:
            _running += 1
            return _running

    def __exit__(self, *exc) -> None:
        global _running
        with _running_lock:
            _running -= 1


_core_limit: int | None = None


def limit_cores(cores: int | None) -> None:
    """The cores this process's grades may count on, when fewer than the
    machine's: a Ray task's share (the CPUs Ray assigned it), since the
    node's other tasks grade beside it. None: the machine's."""
    global _core_limit
    _core_limit = None if cores is None else max(1, int(cores))


def _cores() -> int:
    if _core_limit is not None:
        return _core_limit
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class _GroupDone:
    results: dict
    level: str
    confinement: str
    startup: str
    failure: ProbeOutput | None = None   # what the tasks after the last one run get, if any

    def stopped_model(self, task: Task) -> ProbeOutput | None:
        """What ``task`` (a model task, after all of these) gets in the one-child order."""
        return self.failure  # frozen: shared as it is


@dataclass
class _GroupRun:
    """Runs a list of tasks in children, one after another (see :func:`probe`)."""
    source: Path
    rubric: Rubric
    isolation: str
    workroot: Path
    seed_of: object
    deadline: float
    budget: protocol.ByteBudget
    warm: zygote.Zygote | None
    trusted: bool
    watch: Watch

    def run(self, tasks: list[Task], cancel: threading.Event | None = None,
            on_stop: threading.Event | None = None) -> _GroupDone:
        """``cancel``: stop as soon as it is set. ``on_stop``: set it when a
        failure here means that a model task after these would not run."""
        lim = self.rubric.limits
        results: dict[str, ProbeOutput] = {}
        remaining = list(tasks)
        level, confinement = self.isolation, ""
        startups = set()
        first = True
        after: ProbeOutput | None = None

        def settle(task: Task, output: ProbeOutput) -> None:
            results[task.id] = output
            self.watch.result(task.id, output)

        def stop(failure: ProbeOutput) -> None:
            nonlocal after
            if after is None:
                after = failure
                if on_stop is not None:
                    on_stop.set()

        while remaining:
            child = _supervise(self.source, remaining, self.rubric, self.isolation, self.workroot,
                               self.seed_of, self.deadline, self.budget, self.warm, cancel,
                               self.watch)
            level, confinement = child.level, child.confinement
            startups.add(child.startup)
            if child.ended == ChildEnd.CANCELLED:
                break
            if child.reached == "startup" and (first or self.trusted):
                # No line of the submission has run yet: this is the grader's side.
                if child.ended in (ChildEnd.TIMEOUT, ChildEnd.DEADLINE):
                    raise UngradableError("starting TensorFlow in the sandbox took longer than "
                                          f"{lim['startup_seconds']:g} s")
                detail = (child.run.stderr or "").strip().splitlines()[-1:] or ["no output"]
                raise UngradableError("the grading process could not start TensorFlow: "
                                      f"{detail[0][:200]}")
            first = False
            imported = child.results.get("import")
            if child.reached in ("startup", "import") or (imported is not None and not imported.ok):
                if imported is not None and not imported.ok:
                    failure = imported
                elif child.reached == "startup":  # a fresh child, after an item that failed
                    failure = ProbeOutput.failure(*_death(child, "starting the next child"))
                else:
                    failure = ProbeOutput.failure(*_death(child, "importing your file"))
                failure = ProbeOutput(failure.status, message=failure.message,
                                      traceback=failure.traceback,
                                      during_import=child.reached != "startup")
                for t in remaining:
                    settle(t, failure)
                stop(failure)
                break
            for t in remaining:
                if t.id in child.results:
                    results[t.id] = child.results[t.id]  # the watch heard of it from the child
            broken = next((t for t in remaining if t.id not in results), None)
            if broken is not None:
                status, message = _death(child, f"in {broken.item.probe}")
                settle(broken, ProbeOutput.failure(status, message))
                if child.ended == ChildEnd.DEADLINE:
                    not_run = ProbeOutput.failure(
                        "timeout", "not run: the submission used up its total time")
                    for t in remaining:
                        if t.id not in results:
                            settle(t, not_run)
                    stop(not_run)
                elif status == "timeout" and PROBES[broken.item.probe].pipeline:
                    # the whole-pipeline item would call the same function and hang again
                    hung = ProbeOutput.failure(
                        "timeout", f"not run: {broken.item.probe}() timed out in {broken.item.id}")
                    for t in remaining:
                        if PROBES[t.item.probe].whole and t.id not in results:
                            settle(t, hung)
                    stop(hung)
            remaining = [t for t in remaining if t.id not in results]
        return _GroupDone(results, level, confinement,
                          "fresh" if "fresh" in startups or not startups else "zygote", after)



class _Beside(Watch):
    """The watch of the ``model`` group run beside the others: its items' phases only
    (its outputs are final, and told, once merged with the others')."""

    def __init__(self, watch: Watch):
        self._watch = watch

    def phase(self, name: str, budget: float) -> None:
        if name not in (STARTUP, IMPORT):
            self._watch.phase(name, budget)
