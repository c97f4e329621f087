"""Grade one submission: plan the probes, run them sandboxed, score the checks.

The parent process (this module) never imports the submission or TensorFlow.
It writes each probe's inputs into a fresh work directory, starts
``child_runner.py`` there in the sandbox, watches its progress to give every
item its own wall-clock budget, validates what comes back, and scores it
against the reference's outputs on the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import protocol, sandbox, zygote
from .data import LOADER_PATH, PROJECT_ROOT, grading_data, load_loader
from .checks import CHECKS, Context
from .errors import UngradableError, UsageError
from .inputs import make_inputs
from .outcome import ProbeOutput
from .report import ERROR, FAILED, PASSED, PENDING, CheckResult, QuestionResult, Report
from .rubric import Item, Rubric

GRADER_VERSION = "1.0.0"
PACKAGE_DIR = Path(__file__).resolve().parent
REFERENCE_PATH = PROJECT_ROOT / "reference" / "tensorflow_tutorial.py"
EXPECTED_DIR = PACKAGE_DIR / "expected"          # precomputed public outputs (student bundle)
CACHE_DIR = PROJECT_ROOT / ".cache" / "expected"

UNREADABLE = "the grader could not read what your code returned"
_EXIT_GRACE_SECONDS = 5.0
_CANCEL_POLL_SECONDS = 0.2
# The contract functions the model item calls, in order.
PIPELINE = ("create_placeholders", "initialize_parameters", "forward_propagation", "compute_cost",
            "create_train_step", "initialize_session", "train")


@dataclass(frozen=True)
class Task:
    id: str                 # "<item>-<visibility>", also the output file name
    item: Item
    visibility: str
    params: dict
    inputs: dict            # arrays the child receives
    secret: dict            # arrays the parent keeps (the model's test labels)
    seed: int = 0           # the child's seed: derived, never the rubric's own


def plan(rubric: Rubric, visibilities: tuple[str, ...]) -> list[Task]:
    tasks = []
    for item in rubric.items:
        for vis in item.visibilities(visibilities):
            params = item.params[vis]
            secret = {}
            if item.probe == "model":
                x_train, y_train, x_test, y_test, _ = grading_data(item.data)
                inputs = {"train_images": x_train, "train_labels": y_train, "test_images": x_test}
                secret = {"test_labels": np.asarray(y_test, dtype=np.int64)}
            else:
                inputs = make_inputs(item.probe, rubric.seed_for(vis), item.id, params)
            task_id = f"{item.id}-{vis}"
            tasks.append(Task(task_id, item, vis, params, inputs, secret,
                              child_seed(rubric.seed_for(vis), task_id)))
    return tasks


# ------------------------------------------------------- running the child

def child_seed(seed: int, task_id: str) -> int:
    """The seed a child gets for one task: derived, so the rubric's seed never enters it."""
    digest = hashlib.sha256(f"{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def output_from_result(meta: dict, arrays: dict) -> ProbeOutput:
    """A decoded result as the checks see it; a malformed error report is the child's error."""
    if "error" not in meta:
        return ProbeOutput(status="ok", meta=meta, arrays=arrays)
    error = meta["error"]
    if not isinstance(error, dict) or not isinstance(error.get("message", ""), str) \
            or not isinstance(error.get("traceback", ""), str):
        return ProbeOutput.failure(ERROR, UNREADABLE)
    return ProbeOutput.failure(ERROR, error.get("message", "error")[:500] or "error",
                               error.get("traceback", "")[:4000])


def read_result_file(path: Path, task_id: str, max_bytes: int = protocol.MAX_RESULT_BYTES
                     ) -> ProbeOutput | None:
    """A result saved by save_outputs (the cache, the shipped expected values), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            payload = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    try:
        task, meta, arrays = protocol.decode_result(payload, max_bytes)
    except protocol.ProtocolError:
        return None
    return output_from_result(meta, arrays) if task == task_id else None


def _limits(rubric: Rubric) -> sandbox.Limits:
    lim = rubric.limits
    return sandbox.Limits(cpu_seconds=int(lim["cpu_seconds"]),
                          address_space_mib=int(lim["memory_mib"]),
                          processes=int(lim["processes"]),
                          file_size_mib=int(lim["file_size_mib"]),
                          output_bytes=int(lim["output_kib"]) * 1024,
                          workdir_mib=int(lim["workdir_mib"]),
                          workdir_files=int(lim["workdir_files"]))


def _child_env(rubric: Rubric, workdir: str) -> dict:
    threads = str(rubric.limits["threads"])
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0",
        "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
        "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        "CUDA_VISIBLE_DEVICES": "", "MNIST_OFFLINE": "1",
    }


def hidden_paths(rubric: Rubric) -> list[str]:
    """Files a sandbox must not read even inside the trees it mounts: the grading data."""
    paths = [load_loader().offline_subset_path(),
             os.path.expanduser(os.path.join("~", ".keras", "datasets")),
             os.environ.get("MNIST_PATH")]
    for item in rubric.items:
        if item.data not in (None, "offline", "keras"):
            path = Path(item.data)
            paths.append(str(path if path.is_absolute() else PROJECT_ROOT / path))
    return sorted({os.path.realpath(p) for p in paths if p})


def _prepare_workdir(root: Path, source: Path, rubric: Rubric, tasks: list[Task], seed_of) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    os.chmod(workdir, 0o755)
    shutil.copyfile(source, workdir / rubric.submission_name)
    shutil.copyfile(LOADER_PATH, workdir / "mnist_loader.py")
    shutil.copyfile(PACKAGE_DIR / "child_runner.py", workdir / "grader_child.py")
    shutil.copyfile(PACKAGE_DIR / "protocol.py", workdir / "grader_protocol.py")
    (workdir / "inputs").mkdir()
    job_tasks = []
    for task in tasks:
        entry = {"id": task.id, "probe": task.item.probe, "params": task.params,
                 "seed": seed_of(task)}
        if task.inputs:
            np.savez(workdir / "inputs" / f"{task.id}.npz", **task.inputs)
            entry["inputs"] = f"inputs/{task.id}.npz"
        job_tasks.append(entry)
    job = {"submission": rubric.submission_name, "seed": seed_of(tasks[0]),
           "threads": rubric.limits["threads"], "output_chars": 20000, "tasks": job_tasks}
    (workdir / "job.json").write_text(json.dumps(job))
    return workdir


@dataclass
class _ChildRun:
    """What one child did: results of the tasks it finished, and how it ended."""
    results: dict               # task id -> ProbeOutput, in order
    reached: str                # "startup", "import" or the id of the task it was on
    ended: str                  # "finished" | "timeout" | "deadline" | "died" | "violation"
                                # | "cancelled" (the run no longer needs it)
    received: int = 0           # bytes the child sent
    detail: str = ""            # for a violation: what the child did
    budget: float = 0.0         # the budget of the phase that ran out
    run: sandbox.RunResult | None = None
    level: str = ""
    confinement: str = ""
    startup: str = "fresh"      # "zygote" when the child was forked warm


def _zygote_env(rubric: Rubric) -> dict:
    """The environment of every child, less what is its own (HOME, TMPDIR):
    what the zygote imports TensorFlow with."""
    env = _child_env(rubric, "")
    del env["HOME"], env["TMPDIR"]
    return env


def _warm(rubric: Rubric, startup: str) -> zygote.Zygote | None:
    """The zygote children will fork from, started now (so that TensorFlow
    imports while the parent prepares), or None: fresh children."""
    if startup == "fresh" or not zygote.possible():
        return None
    return zygote.for_env(_zygote_env(rubric))


def prestart(rubric: Rubric, startup: str | None = None) -> None:
    """Start the zygote now, if children will fork from one: a batch calls it
    before its own preparations, which then overlap TensorFlow's import."""
    _warm(rubric, startup or zygote.requested_mode())


def _startup(rubric: Rubric, startup: str) -> zygote.Zygote | None:
    """The zygote to fork every child of a run from, once it is ready; None
    for fresh children (the fallback: no fork or pidfds, a TensorFlow that
    starts threads at import, a zygote that failed)."""
    warm = _warm(rubric, startup)
    if warm is None:
        return None
    return warm if warm.ready(float(rubric.limits["startup_seconds"])) else None


def _start_child(workdir: Path, rubric: Rubric, env: dict, write_fd: int, isolation: str,
                 warm: zygote.Zygote | None) -> tuple[sandbox.SandboxedProcess, str]:
    """The sandboxed child and how it started: forked from ``warm``, or fresh."""
    hidden = hidden_paths(rubric)
    if warm is not None:
        try:
            level = sandbox.detect_isolation(isolation)[0]
            return sandbox.start_forked(warm.request, workdir, _limits(rubric), env, level,
                                        pass_fds=(write_fd,), hidden=hidden), "zygote"
        except sandbox.ForkUnavailable as exc:  # nothing ran: start it fresh
            warm.broken(str(exc))
    return sandbox.start([sys.executable, "-s", "-B", "grader_child.py"], workdir, _limits(rubric),
                         env, isolation=isolation, pass_fds=(write_fd,), hidden=hidden), "fresh"


def _supervise(source: Path, tasks: list[Task], rubric: Rubric, isolation: str, workroot: Path,
               seed_of, deadline: float, byte_budget: int,
               warm: zygote.Zygote | None = None,
               cancel: threading.Event | None = None) -> _ChildRun:
    """Run one child on ``tasks`` in order. The parent's clock alone decides.

    Phases: startup (until the child says ``ready``), import, then each task.
    A phase starts when the previous one ended (as the parent saw it) and may
    last its budget, never past ``deadline``; what the child sends can only
    end a phase early. Anything out of order is a violation that ends the
    child: the phase it was in gets the blame.
    """
    lim = rubric.limits
    max_result = int(lim["result_mib"]) * 2**20
    phases = ["startup", "import", *(t.id for t in tasks)]
    budgets = {"startup": float(lim["startup_seconds"]), "import": float(lim["import_seconds"]),
               **{t.id: float(t.item.budget_seconds) for t in tasks}}
    workdir = _prepare_workdir(workroot, source, rubric, tasks, seed_of)
    read_fd, write_fd = os.pipe()
    env = _child_env(rubric, str(workdir))
    env[protocol.FD_VARIABLE] = str(write_fd)
    try:
        try:
            proc, startup = _start_child(workdir, rubric, env, write_fd, isolation, warm)
        finally:
            os.close(write_fd)
    except sandbox.SandboxError as exc:
        os.close(read_fd)
        _remove(workdir)
        raise UngradableError(f"the sandbox cannot start: {exc}") from None
    reader = protocol.Reader(read_fd, max_result, byte_budget)
    out = _ChildRun({}, "startup", "finished", level=proc.isolation,
                    confinement=getattr(proc, "confinement", ""), startup=startup)
    index, phase_start = 0, time.monotonic()
    try:
        while index < len(phases):
            name = phases[index]
            out.reached = name
            phase_end = min(phase_start + budgets[name], deadline)
            wait = phase_end - time.monotonic()
            message = reader.get(wait if cancel is None else min(wait, _CANCEL_POLL_SECONDS))
            if message is None and cancel is not None and cancel.is_set():
                out.ended = "cancelled"
                break
            if message is None or message.at > phase_end:
                if message is None and time.monotonic() < phase_end:
                    continue
                out.ended = "deadline" if phase_end == deadline else "timeout"
                out.budget = budgets[name]
                break
            if message.kind == "eof":
                # The child closed the channel or ended: it may still run, on the same clock.
                if proc.wait(max(0.0, phase_end - time.monotonic())) is None:
                    out.ended = "deadline" if phase_end == deadline else "timeout"
                    out.budget = budgets[name]
                else:
                    out.ended = "died"
                break
            expected_event = name == "startup"
            if message.kind == "event" and expected_event and message.word == protocol.READY:
                pass
            elif message.kind == "result" and not expected_event and message.task == name:
                out.results[name] = output_from_result(message.meta, message.arrays)
            elif message.kind == "bad-result" and not expected_event:
                out.results[name] = ProbeOutput.failure(ERROR, f"{UNREADABLE}: {message.error}")
            else:
                out.ended = "violation"
                out.detail = message.error or "sent results out of order"
                break
            index, phase_start = index + 1, message.at
        else:
            out.reached = "finished"
            proc.wait(max(0.0, min(deadline - time.monotonic(), _EXIT_GRACE_SECONDS)))
    finally:
        try:
            proc.kill()  # the whole tree, whatever it left behind
        except sandbox.SandboxError as exc:
            _remove(workdir)
            raise UngradableError(f"the sandbox could not be stopped: {exc}") from None
        out.run = proc.result()
        reader.join(_EXIT_GRACE_SECONDS)
        out.received = reader.received
        _remove(workdir)
    return out


def _remove(workdir: Path) -> None:
    try:
        sandbox.remove_tree(workdir)
    except sandbox.SandboxError as exc:  # never the student's grade: say so and go on
        print(f"grader: warning: {exc}", file=sys.stderr)


@dataclass(frozen=True)
class Probed:
    """What running the probes gave: outputs by task id, and how they ran."""
    results: dict
    level: str
    confinement: str
    startup: str                # "zygote" (every child forked warm) or "fresh"


def run_probes(source: Path, tasks: list[Task], rubric: Rubric, isolation: str,
               workroot: Path, seed_of, trusted: bool = False) -> tuple[dict, str, str]:
    """Run every task on ``source`` in sandboxed children.

    Returns ({task id: output}, isolation level, confinement detail).
    """
    probed = probe(source, tasks, rubric, isolation, workroot, seed_of, trusted)
    return probed.results, probed.level, probed.confinement


def probe(source: Path, tasks: list[Task], rubric: Rubric, isolation: str, workroot: Path,
          seed_of, trusted: bool = False, startup: str | None = None) -> Probed:
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
    """
    lim = rubric.limits
    warm = _startup(rubric, startup or zygote.requested_mode())
    deadline = time.monotonic() + float(lim["startup_seconds"]) + float(lim["import_seconds"]) \
        + sum(float(t.item.budget_seconds) for t in tasks)
    # What all children together may send: a hostile one cannot fill the parent's memory
    # (two groups running side by side may each be granted what is left: twice at most).
    budget = _Budget(4 * int(lim["result_mib"]) * 2**20)
    runner = _GroupRun(source, rubric, isolation, workroot, seed_of, deadline, budget, warm,
                       trusted)
    with _concurrency() as running:
        model = [t for t in tasks if t.item.probe == "model"]
        others = [t for t in tasks if t.item.probe != "model"]
        if warm is None or not model or not others or _cores() < 2 * running:
            done = runner.run(tasks)
            return Probed(done.results, done.level, done.confinement, done.startup)
        cancel = threading.Event()
        side: list = []

        def run_model() -> None:
            try:
                side.append(runner.run(model, cancel))
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
    startups = {main.startup, side_run.startup}
    return Probed({t.id: results[t.id] for t in tasks}, main.level, main.confinement,
                  "zygote" if startups == {"zygote"} else "fresh")


class _Budget:
    """Bytes the children of one run may still send, shared by its groups."""

    def __init__(self, total: int):
        self.left = total
        self._lock = threading.Lock()

    def take(self, received: int) -> None:
        with self._lock:
            self.left -= received


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


def _cores() -> int:
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
    budget: _Budget
    warm: zygote.Zygote | None
    trusted: bool

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

        def stop(failure: ProbeOutput) -> None:
            nonlocal after
            if after is None:
                after = failure
                if on_stop is not None:
                    on_stop.set()

        while remaining:
            child = _supervise(self.source, remaining, self.rubric, self.isolation, self.workroot,
                               self.seed_of, self.deadline, max(self.budget.left, 2**20),
                               self.warm, cancel)
            self.budget.take(child.received)
            level, confinement = child.level, child.confinement
            startups.add(child.startup)
            if child.ended == "cancelled":
                break
            if child.reached == "startup" and (first or self.trusted):
                # No line of the submission has run yet: this is the grader's side.
                if child.ended in ("timeout", "deadline"):
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
                    results[t.id] = failure
                stop(failure)
                break
            for t in remaining:
                if t.id in child.results:
                    results[t.id] = child.results[t.id]
            broken = next((t for t in remaining if t.id not in results), None)
            if broken is not None:
                status, message = _death(child, f"in {broken.item.probe}")
                results[broken.id] = ProbeOutput.failure(status, message)
                if child.ended == "deadline":
                    not_run = ProbeOutput.failure(
                        "timeout", "not run: the submission used up its total time")
                    for t in remaining:
                        results.setdefault(t.id, not_run)
                    stop(not_run)
                elif status == "timeout" and broken.item.probe in PIPELINE:
                    # the whole-pipeline item would call the same function and hang again
                    hung = ProbeOutput.failure(
                        "timeout", f"not run: {broken.item.probe}() timed out in {broken.item.id}")
                    for t in remaining:
                        if t.item.probe == "model":
                            results.setdefault(t.id, hung)
                    stop(hung)
            remaining = [t for t in remaining if t.id not in results]
        return _GroupDone(results, level, confinement,
                          "fresh" if "fresh" in startups or not startups else "zygote", after)


def _death(child: _ChildRun, where: str) -> tuple[str, str]:
    if child.ended == "deadline":
        return "timeout", f"stopped {where}: the submission used up its total time"
    if child.ended == "timeout":
        return "timeout", f"timed out after {child.budget:g} s {where}"
    if child.ended == "violation":
        return ERROR, f"the grader could not read what your code returned {where}: {child.detail}"
    run = child.run
    if run is not None and run.signal:
        try:
            name = signal.Signals(run.signal).name
        except ValueError:
            name = f"signal {run.signal}"
        hint = {"SIGXCPU": " (CPU time limit)", "SIGSEGV": " (a crash in native code)",
                "SIGKILL": " (killed: memory or process limits?)",
                "SIGXFSZ": " (file size limit)"}.get(name, "")
        return "crashed", f"the process was killed by {name}{hint} {where}"
    if child.ended == "finished" or run is None:
        return ERROR, f"the process stopped before this item {where}"
    return "crashed", f"the process exited (exit code {run.returncode}) {where}"


# ------------------------------------------------------- expected values

def planned_seed(task: Task) -> int:
    """The child's seed for a task, as plan() derived it from the rubric's seed."""
    return task.seed


def _digest(rubric: Rubric, tasks: list[Task], reference: Path) -> str:
    h = hashlib.sha256()
    for path in (reference, LOADER_PATH, PACKAGE_DIR / "child_runner.py",
                 PROJECT_ROOT / "requirements.txt"):
        if path.is_file():
            h.update(path.read_bytes())
    h.update(json.dumps(rubric.limits, sort_keys=True).encode())
    for t in tasks:
        h.update(json.dumps([t.id, t.item.probe, t.params], sort_keys=True, default=str).encode())
        for key in sorted(t.inputs):
            h.update(key.encode())
            h.update(np.ascontiguousarray(t.inputs[key]).tobytes())
    return h.hexdigest()[:24]


def _load_saved(folder: Path, tasks: list[Task]) -> dict | None:
    out = {}
    for t in tasks:
        result = read_result_file(folder / f"{t.id}.result", t.id)
        if result is None or not result.ok:
            return None
        out[t.id] = result
    return out


def expected_outputs(rubric: Rubric, tasks: list[Task], workroot: Path) -> dict:
    """The reference's outputs on the same inputs: shipped, cached, or computed now."""
    if not REFERENCE_PATH.is_file():
        saved = _load_saved(EXPECTED_DIR, tasks)
        if saved is None:
            raise UngradableError("no reference solution and no precomputed expected values "
                                  f"for these checks in {EXPECTED_DIR}")
        return saved
    folder = CACHE_DIR / _digest(rubric, tasks, REFERENCE_PATH)
    saved = _load_saved(folder, tasks) if folder.is_dir() else None
    if saved is not None:
        return saved
    results, _, _ = run_probes(REFERENCE_PATH, tasks, rubric, "basic", workroot,
                               seed_of=planned_seed, trusted=True)
    failed = {k: v for k, v in results.items() if not v.ok}
    if failed:
        task_id, out = next(iter(failed.items()))
        raise UngradableError(f"the reference solution fails {task_id}: {out.message}")
    _save(folder, tasks, results)
    return results


def save_outputs(folder: Path, tasks: list[Task], results: dict) -> None:
    """Write outputs in the channel's format (``<task>.result``), as read_result_file reads them."""
    for t in tasks:
        out = results[t.id]
        outputs = {**out.meta, **{f"value_{k}": v for k, v in out.arrays.items()}}
        (folder / f"{t.id}.result").write_bytes(protocol.encode_result(t.id, outputs))


def _save(folder: Path, tasks: list[Task], results: dict) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=_ensure(folder.parent)))
    save_outputs(tmp, tasks, results)
    try:
        os.replace(tmp, folder)
    except OSError:  # another grader saved it first
        shutil.rmtree(tmp, ignore_errors=True)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- scoring

def score_item(item: Item, tasks: list[Task], got: dict, expected: dict,
               rubric: Rubric) -> QuestionResult:
    total_weight = sum(c.weight for c in item.checks)
    by_vis = {t.visibility: t for t in tasks}
    results = []
    for spec in item.checks:
        task = by_vis.get(spec.visibility)
        if task is None:
            continue
        points = item.points * spec.weight / total_weight
        out = got[task.id]
        if not out.ok:
            results.append(CheckResult(spec.name, spec.kind, ERROR, points, 0.0, spec.visibility,
                                       out.message, _error_hint(out), out.traceback,
                                       failure=out.status))
            continue
        ctx = Context(spec=spec.spec, got=out, expected=expected.get(task.id),
                      inputs=task.inputs, params=task.params, tolerances=rubric.tolerances,
                      secret=task.secret, seed=task.seed)
        try:
            verdict = CHECKS[spec.kind].fn(ctx)
        except Exception as exc:  # a check tripping on odd data is the data's fault
            results.append(CheckResult(spec.name, spec.kind, FAILED, points, 0.0, spec.visibility,
                                       f"unexpected values ({type(exc).__name__})",
                                       spec.spec.get("hint", "")))
            continue
        hidden = spec.visibility == "hidden"
        if verdict.pending:
            status, score = PENDING, 0.0
        else:
            status, score = (PASSED, points) if verdict.passed else (FAILED, 0.0)
        message = verdict.message
        hint = verdict.diagnosis or ""
        if hidden and status == FAILED:
            # hidden checks never show expected values: name the mistake or give the hint
            message = verdict.diagnosis or spec.spec.get("hint") or \
                "a hidden check failed on inputs you have not seen"
            hint = spec.spec.get("hint", "") if verdict.diagnosis else ""
        results.append(CheckResult(spec.name, spec.kind, status, points, score, spec.visibility,
                                   message, hint))
    max_score = sum(r.points for r in results)
    score = sum(r.score for r in results)
    hidden_points = item.points + item.hidden_points - max_score  # checks not run here
    if all(r.status == PASSED for r in results):
        status, feedback = PASSED, "all checks passed"
    elif any(r.status == ERROR for r in results):
        first = next(r for r in results if r.status == ERROR)
        status, feedback = ERROR, first.message
    elif all(r.status in (PASSED, PENDING) for r in results):
        status, feedback = PENDING, next(r for r in results if r.status == PENDING).message
    else:
        first = next(r for r in results if r.status == FAILED)
        status, feedback = FAILED, first.hint or first.message
    return QuestionResult(item.id, item.title, round(score, 6), round(max_score, 6), status,
                          _one_line(feedback), tuple(results), round(hidden_points, 6))


def _error_hint(out: ProbeOutput) -> str:
    message = out.message
    if "NotImplementedError" in message:
        return "write your answer where the starter says YOUR CODE HERE"
    if out.status == "timeout":
        return "look for an endless loop, or work done at import time"
    if any(s in message for s in ("Dimensions must be equal", "Incompatible shapes",
                                  "Cannot feed value of shape", "must have the same rank")):
        return ("check the shapes: X flattened to (m, 784), W1 (784, n_hidden), "
                "W2 (n_hidden, 10), the labels Y (m, 10)")
    return ""


def _one_line(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_script(submission: Path, folder: Path, rubric: Rubric) -> tuple[Path, str, str]:
    """A notebook's code cells as a script beside nothing else: (path, problem, source).

    ``source`` is the text of a script extracted from a notebook (also one that
    batch extracted before), whose lines ``notebook.relocate`` maps back to cells;
    "" for a plain ``.py``.
    """
    from . import notebook
    if submission.suffix != ".ipynb":
        try:
            head = submission.read_bytes()[:4096].decode("utf-8", "replace")
        except OSError:
            return submission, "", ""
        if not notebook.is_extracted(head):
            return submission, "", ""
        return submission, "", submission.read_text(encoding="utf-8", errors="replace")
    try:
        source = notebook.extract(submission)
    except notebook.NotebookError as exc:
        return submission, f"{submission.name}: {exc}", ""
    folder.mkdir()
    script = folder / rubric.submission_name
    script.write_text(source)
    return script, "", source


# How the child words a failed import (child_runner.py): the report shows it once.
def _import_error(got: dict, problem: str) -> str:
    """The reason importing the file failed, when it failed for every item alike."""
    if problem:
        return problem
    outputs = list(got.values())
    if not outputs or not all(o.during_import for o in outputs):
        return ""
    return outputs[0].message


def _as_cells(q: QuestionResult, source: str, name: str) -> QuestionResult:
    """A question's messages and tracebacks with the notebook's cells for script lines."""
    from dataclasses import replace
    from .notebook import line_map, relocate
    mapping = line_map(source)
    checks = tuple(replace(c, message=relocate(c.message, source, name, mapping),
                           traceback=relocate(c.traceback, source, name, mapping))
                   for c in q.checks)
    return replace(q, checks=checks, feedback=relocate(q.feedback, source, name, mapping))


def grade(submission: Path, rubric: Rubric, visibilities: tuple[str, ...] = ("public", "hidden"),
          isolation: str = "auto", prepared: tuple[list[Task], dict] | None = None,
          startup: str | None = None) -> Report:
    """Grade one file; raises GraderError (exit 2) for anything that is not the student's.

    ``prepared``: the plan of ``rubric`` for ``visibilities`` and the reference's
    outputs on it, computed elsewhere (a Ray driver hands them to the node that
    grades, which then reads no grading data and runs no reference). By
    default both are computed, or read from the cache, here.

    ``startup`` (default: ``$GRADER_STARTUP``, else ``auto``) says how the
    sandboxed children start; see :func:`probe`. The report says which was used.
    """
    if not submission.is_file():
        raise UsageError(f"{submission}: no such file")
    startup = startup or zygote.requested_mode()
    _warm(rubric, startup)  # TensorFlow imports while the inputs are prepared
    tasks, expected = prepared if prepared is not None else (plan(rubric, visibilities), None)
    if prepared is not None and not {id(t.item) for t in tasks} <= {id(i) for i in rubric.items}:
        # scoring matches a task to its item by identity: they must travel together
        raise UngradableError("the prepared plan is not made of this rubric's items")
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        workroot = Path(tmp)
        os.chmod(workroot, 0o711)
        if expected is None:
            expected = expected_outputs(rubric, tasks, workroot)
        source, problem, extracted = _as_script(submission.resolve(), workroot / "notebook",
                                                rubric)
        if problem:  # a broken notebook is the student's, like a syntax error
            got = {t.id: ProbeOutput.failure(ERROR, problem) for t in tasks}
            level, confinement = sandbox.detect_isolation(isolation)[0], ""
            started = ""
        else:
            probed = probe(source, tasks, rubric, isolation, workroot, seed_of=planned_seed,
                           startup=startup)
            got, level, confinement, started = (probed.results, probed.level,
                                                probed.confinement, probed.startup)
    questions = tuple(score_item(item, [t for t in tasks if t.item is item], got, expected, rubric)
                      for item in rubric.items)
    from dataclasses import replace
    from .notebook import relocate, skipped
    questions = tuple(replace(q, expects=item.expects) for q, item in zip(questions, rubric.items))
    import_error = _import_error(got, problem)
    notes: tuple[str, ...] = ()
    if extracted:
        questions = tuple(_as_cells(q, extracted, rubric.submission_name) for q in questions)
        import_error = relocate(import_error, extracted, rubric.submission_name)
        notes = tuple(skipped(extracted))
    complete = set(visibilities) >= {"public", "hidden"} and rubric.full_total == rubric.max_total
    checks_run = "all" if complete else "public"
    return Report(submission=str(submission), total=round(sum(q.score for q in questions), 6),
                  max_total=round(sum(q.max_score for q in questions), 6), questions=questions,
                  isolation=level, checks_run=checks_run, full_total=rubric.full_total,
                  grader_version=GRADER_VERSION, rubric_digest=rubric.digest[:16],
                  confinement=confinement, import_error=import_error, notes=notes,
                  startup=started)
