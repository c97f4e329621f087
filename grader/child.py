"""One sandboxed child: its work directory, its environment, and the parent's clock.

The parent writes each task's inputs into a fresh work directory, starts
the child's side (``grader/inside/``) there in the sandbox (fresh, or forked from the zygote),
reads what it sends over the channel (``protocol.py``) and decides, by its own
clock alone, how each phase ended.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config, protocol, sandbox, zygote
from .data import load_loader
from .errors import UngradableError
from .inside import zygote_server as inside_zygote
from .outcome import ChildEnd, ProbeOutput, ProbeStatus
from .plan import Task
from .probes import UNREADABLE
from .progress import Watch
from .rubric import Rubric

# The child's side of the grader, the package grader/inside/, as the work directory
# names it (the zygote loads it from the grader's package under the same name).
CHILD_PACKAGE = inside_zygote.PACKAGE
CHILD_DIR = Path(inside_zygote.__file__).resolve().parent
_EXIT_GRACE_SECONDS = 5.0
_CANCEL_POLL_SECONDS = 0.2
OWN_BYTES = 2**20  # what each child may send besides the grade's shared byte budget
ERROR = ProbeStatus.ERROR


def output_from_result(meta: dict, arrays: dict) -> ProbeOutput:
    """A decoded result as the checks see it; a malformed error report is the child's error."""
    if "error" not in meta:
        return ProbeOutput(status="ok", meta=meta, arrays=arrays)
    error = meta["error"]
    if not isinstance(error, dict) or not isinstance(error.get("message", ""), str) \
            or not isinstance(error.get("traceback", ""), str):
        return ProbeOutput.failure(ERROR, UNREADABLE)
    return ProbeOutput.failure(ERROR, error.get("message", "error")[:500] or "error",
                               error.get("traceback", "")[:4000],
                               unanswered=error.get("unanswered") is True)


def child_sources() -> list[Path]:
    """The files of the child's side (``grader/inside/``), in a stable order."""
    return sorted(CHILD_DIR.glob("*.py"))


def _limits(rubric: Rubric) -> sandbox.Limits:
    lim = rubric.limits
    return sandbox.Limits(cpu_seconds=int(lim["cpu_seconds"]),
                          address_space_mib=int(lim["memory_mib"]),
                          memory_mib=int(lim["memory_mib"]),
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
            paths.append(str(path if path.is_absolute() else config.CONFIG.project_root / path))
    return sorted({os.path.realpath(p) for p in paths if p})


def _prepare_workdir(root: Path, source: Path, rubric: Rubric, tasks: list[Task], seed_of) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    os.chmod(workdir, 0o755)
    shutil.copyfile(source, workdir / rubric.submission_name)
    cfg = config.CONFIG
    shutil.copyfile(cfg.loader, workdir / "mnist_loader.py")
    (workdir / CHILD_PACKAGE).mkdir()
    for path in child_sources():
        shutil.copyfile(path, workdir / CHILD_PACKAGE / path.name)
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
    ended: ChildEnd             # how the parent stopped reading it
    received: int = 0           # bytes the child sent
    detail: str = ""            # for a violation: what the child did
    budget: float = 0.0         # the budget of the phase that ran out
    run: sandbox.RunResult | None = None
    level: str = ""
    confinement: str = ""
    startup: str = "fresh"      # "zygote" when the child was forked warm
    memory_mib: int = 0         # the sandbox's memory limit, for an out-of-memory end


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
    return sandbox.start([sys.executable, "-s", "-B", "-m", f"{CHILD_PACKAGE}.runner"], workdir, _limits(rubric),
                         env, isolation=isolation, pass_fds=(write_fd,), hidden=hidden), "fresh"


def _supervise(source: Path, tasks: list[Task], rubric: Rubric, isolation: str, workroot: Path,
               seed_of, deadline: float, byte_budget: protocol.ByteBudget,
               warm: zygote.Zygote | None = None,
               cancel: threading.Event | None = None, watch: Watch | None = None) -> _ChildRun:
    """Run one child on ``tasks`` in order. The parent's clock alone decides.

    Phases: startup (until the child says ``ready``), import, then each task.
    A phase starts when the previous one ended (as the parent saw it) and may
    last its budget, never past ``deadline``; what the child sends can only
    end a phase early. Anything out of order is a violation that ends the
    child: the phase it was in gets the blame. ``watch`` hears of each phase
    as it starts and of each result as it arrives.
    """
    watch = watch or Watch()
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
    reader = protocol.Reader(read_fd, max_result, OWN_BYTES, shared=byte_budget)
    out = _ChildRun({}, "startup", ChildEnd.FINISHED, level=proc.isolation,
                    confinement=getattr(proc, "confinement", ""), startup=startup,
                    memory_mib=int(rubric.limits["memory_mib"]))
    index, phase_start = 0, time.monotonic()
    watch.phase(phases[0], budgets[phases[0]])
    try:
        while index < len(phases):
            name = phases[index]
            out.reached = name
            phase_end = min(phase_start + budgets[name], deadline)
            wait = phase_end - time.monotonic()
            message = reader.get(wait if cancel is None else min(wait, _CANCEL_POLL_SECONDS))
            if message is None and cancel is not None and cancel.is_set():
                out.ended = ChildEnd.CANCELLED
                break
            if message is None or message.at > phase_end:
                if message is None and time.monotonic() < phase_end:
                    continue
                out.ended = ChildEnd.DEADLINE if phase_end == deadline else ChildEnd.TIMEOUT
                out.budget = budgets[name]
                break
            if message.kind == "eof":
                # The child closed the channel or ended: it may still run, on the same clock.
                if proc.wait(max(0.0, phase_end - time.monotonic())) is None:
                    out.ended = ChildEnd.DEADLINE if phase_end == deadline else ChildEnd.TIMEOUT
                    out.budget = budgets[name]
                else:
                    out.ended = ChildEnd.DIED
                break
            expected_event = name == "startup"
            if message.kind == "event" and expected_event and message.word == protocol.READY:
                pass
            elif message.kind == "result" and not expected_event and message.task == name:
                out.results[name] = output_from_result(message.meta, message.arrays)
            elif message.kind == "bad-result" and not expected_event:
                out.results[name] = ProbeOutput.failure(ERROR, f"{UNREADABLE}: {message.error}")
            else:
                out.ended = ChildEnd.VIOLATION
                out.detail = message.error or "sent results out of order"
                break
            if name in out.results:
                watch.result(name, out.results[name])
            index, phase_start = index + 1, message.at
            if index < len(phases):
                watch.phase(phases[index], budgets[phases[index]])
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
        if out.ended == ChildEnd.DIED and out.run.out_of_memory:
            out.ended = ChildEnd.OUT_OF_MEMORY
        reader.join(_EXIT_GRACE_SECONDS)
        out.received = reader.received
        _remove(workdir)
    return out


def _remove(workdir: Path) -> None:
    try:
        sandbox.remove_tree(workdir)
    except sandbox.SandboxError as exc:  # never the student's grade: say so and go on
        print(f"grader: warning: {exc}", file=sys.stderr)


def _death(child: _ChildRun, where: str) -> tuple[str, str]:
    if child.ended == ChildEnd.DEADLINE:
        return "timeout", f"stopped {where}: the submission used up its total time"
    if child.ended == ChildEnd.TIMEOUT:
        return "timeout", f"timed out after {child.budget:g} s {where}"
    if child.ended == ChildEnd.VIOLATION:
        return ERROR, f"the grader could not read what your code returned {where}: {child.detail}"
    if child.ended == ChildEnd.OUT_OF_MEMORY:
        return "crashed", f"out of memory (the sandbox's limit is {child.memory_mib} MiB) {where}"
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
    if child.ended == ChildEnd.FINISHED or run is None:
        return ERROR, f"the process stopped before this item {where}"
    return "crashed", f"the process exited (exit code {run.returncode}) {where}"

