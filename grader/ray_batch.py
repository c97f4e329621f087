"""``batch --ray [ADDRESS]``: a class graded by the tasks of a Ray cluster.

Everything but the grading loop is local batch's (``batch.py``): discovery,
resume keys, the gradebook, reports, summary, progress and Ctrl-C.  Here:

* **The driver prepares once.**  It plans the checks (the grading data
  included), takes the reference's outputs from the cache (``batch._prepare``
  computed them, on this machine, if needed) and puts the rubric, the plan
  and those outputs in Ray's object store in one object.  No node reads
  grading data, runs the reference or needs the project's files: the grader's
  own code travels as the job's ``working_dir`` (``grader/`` and the MNIST
  loader, nothing else), each submission's bytes as its task's argument.
* **A task grades one submission** with ``engine.grade``, in the sandbox of
  the node that runs it (full isolation where its Ray worker is root, basic
  otherwise: each row says which).  Student code only ever runs in the
  sandbox's fresh child process, gone before the next grade; the Ray worker
  (the sandbox's parent, as local batch's threads are) never runs it, and
  is replaced after ``WORKER_GRADES`` grades (``max_calls``).  A new worker
  per grade would cost about a second each, for no isolation gained.
* **Faults.**  A task whose worker or node dies is retried by Ray up to
  ``--retries`` times; one that fails every attempt gets ``ungradable`` with
  the reason.  Each task's result is recorded once, when ``ray.wait``
  returns it, so a retried task is never counted twice.
* **The driver alone writes DIR**, as each result arrives.

Ray is optional (``requirements-ray.txt``): it is imported only here, and
only when ``--ray`` is given.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from . import batch, engine
from .errors import GraderError, UsageError
from .report import clean_line
from .rubric import Rubric

__all__ = ["LOCAL", "Connection", "check_address", "connect", "grade_all"]

LOCAL = "local"                     # --ray without an address: a Ray instance for this run
DEFAULT_RETRIES = 2
WORKER_GRADES = 25                  # grades per Ray worker process before Ray replaces it
_CONNECT_SECONDS = 10.0
_CANCEL_SECONDS = 60.0
_HOST_PORT = re.compile(r"^(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


@dataclass
class Connection:
    """A Ray session of this process: the module, the CPUs to fill, what it is."""

    ray: ModuleType
    cpus: int
    description: str

    def close(self) -> None:
        try:
            self.ray.shutdown()
        except Exception:   # shutting down is best effort: DIR is already written
            pass


def check_address(address: str) -> str:
    """``local``, ``auto``, ``host:port`` or ``ray://host:port``; else a UsageError."""
    if address in (LOCAL, "auto") or _HOST_PORT.match(address):
        return address
    raise UsageError(f"--ray {address}: expected auto, host:port or ray://host:port "
                     "(or nothing, for a local Ray instance); put --ray after SRC")


def _reachable(address: str) -> None:
    """Fail in seconds, with one line, when nothing listens at ``host:port``."""
    match = _HOST_PORT.match(address)
    if not match:
        return
    host, port = match["host"].strip("[]"), int(match["port"])
    try:
        socket.create_connection((host, port), timeout=_CONNECT_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"--ray {address}: no Ray cluster answers there ({reason}); "
                         "is `ray start --head` running, and is the port open?") from None


def connect(address: str, cpus: int | None) -> Connection:
    """Start a local Ray instance (``local``, with ``cpus`` CPUs) or join a cluster."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray, which is not installed here: "
                         f"{sys.executable} -m pip install -r requirements-ray.txt") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")   # no reports sent anywhere
    try:
        with tempfile.TemporaryDirectory(prefix="grader-ray-code-") as scratch:
            # the job's code, uploaded by ray.init: nodes need none of the project's files
            common = {"logging_level": logging.ERROR, "log_to_driver": False,
                      "runtime_env": {"working_dir": str(_code_folder(Path(scratch)))}}
            if address == LOCAL:
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, **common)
                where = "a local Ray instance"
            else:
                _reachable(address)
                ray.init(address=address, **common)
                where = f"the Ray cluster at {address}"
    except GraderError:
        raise
    except Exception as exc:   # Ray raises ConnectionError, RuntimeError, ValueError...
        Connection(ray, 0, "").close()   # whatever half-started
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"--ray {address}: cannot start or join Ray: {clean_line(first)[:300]}"
                         ) from None
    alive = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    fit = [r for r in alive
           if r.get("CPU", 0) >= 1 and r.get("memory", 0) >= batch.MEMORY_PER_WORKER]
    if not fit:   # the tasks could never be scheduled: say so rather than wait forever
        ray.shutdown()
        raise UsageError(f"--ray {address}: no node of the cluster has a CPU and "
                         f"{batch.MEMORY_PER_WORKER // 2**20} MiB of memory free to grade")
    total = int(sum(r.get("CPU", 0) for r in fit))
    return Connection(ray, total, f"{where}: {len(alive)} node{'s' * (len(alive) != 1)}, "
                                  f"{total} CPUs")


# ------------------------------------------------------------- on a node

def _grade_on_node(shared: tuple, student: str, graded: bytes, suffix: str,
                   visibilities: tuple[str, ...], isolation: str) -> tuple[batch._Outcome, str]:
    """One Ray task: grade one submission here, in this node's sandbox.

    ``shared`` is (rubric, plan, reference outputs), from the object store.
    The file is written as local batch writes it (``<student><suffix>``), so
    that the report reads the same.  Returns (outcome, where it ran).
    """
    import ray

    rubric, tasks, expected = shared
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grader-ray-") as tmp:
        path = Path(tmp) / f"{student}{suffix}"
        path.write_bytes(graded)
        try:
            report = engine.grade(path, rubric, visibilities, isolation=isolation,
                                  prepared=(tasks, expected))
            outcome = batch._Outcome(report, "", time.monotonic() - started)
        except GraderError as exc:
            outcome = batch._Outcome(None, str(exc), time.monotonic() - started)
        except Exception as exc:   # a bug of ours on this one submission: the batch goes on
            outcome = batch._Outcome(None, f"internal grader error: {type(exc).__name__}: {exc}",
                                     time.monotonic() - started)
    context = ray.get_runtime_context()
    node = f"{ray.util.get_node_ip_address()} ({context.get_node_id()[:8]})"
    return outcome, node


def _code_folder(scratch: Path) -> Path:
    """What a node needs of the project: the grader package and the MNIST loader."""
    folder = scratch / "code"
    (folder / "grader").mkdir(parents=True)
    for path in sorted(engine.PACKAGE_DIR.rglob("*.py")):  # the sandbox package's included
        target = folder / "grader" / path.relative_to(engine.PACKAGE_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    (folder / "starter").mkdir()
    shutil.copy2(engine.LOADER_PATH, folder / "starter" / engine.LOADER_PATH.name)
    return folder


def _failure(ray: ModuleType, exc: BaseException, retries: int) -> str:
    """Why a task left no result, in one line: the row's ``ungradable`` reason."""
    errors = ray.exceptions
    first = clean_line((str(exc).strip().splitlines() or [""])[0])[:200]
    attempts = f"on each of its {retries + 1} attempts" if retries else "on its only attempt"
    if isinstance(exc, errors.OutOfMemoryError):
        what = f"Ray's memory monitor killed the worker grading it {attempts}"
    elif isinstance(exc, errors.NodeDiedError):
        what = f"the Ray node grading it died {attempts}"
    elif isinstance(exc, errors.WorkerCrashedError):
        what = f"the Ray worker grading it died {attempts}"
    elif isinstance(exc, errors.RuntimeEnvSetupError):
        what = "a Ray node could not set up the grader's code"
    elif isinstance(exc, errors.RayTaskError):
        what = "internal grader error on a Ray node"
    else:
        what = f"Ray could not run its grade ({type(exc).__name__})"
    return f"{what}: {first}" if first else what


# ------------------------------------------------------------ the driver

def grade_all(conn: Connection, todo: list, output, rubric: Rubric,
              visibilities: tuple[str, ...], isolation: str, jobs: int | None,
              retries: int = DEFAULT_RETRIES) -> bool:
    """Grade ``todo`` (as ``batch._grade_all``) on Ray; returns True when interrupted."""
    ray = conn.ray
    tasks = engine.plan(rubric, visibilities)
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        os.chmod(tmp, 0o711)
        expected = engine.expected_outputs(rubric, tasks, Path(tmp))   # cached by _prepare
    shared = ray.put((rubric, tasks, expected))   # one object: tasks keep their items
    remote = ray.remote(num_cpus=1, memory=batch.MEMORY_PER_WORKER, max_calls=WORKER_GRADES,
                        max_retries=retries, retry_exceptions=False)(_grade_on_node)
    window = min(jobs or conn.cpus, len(todo))
    return _drive(ray, remote, shared, list(todo), output, visibilities, isolation,
                  window, retries)


def _drive(ray, remote, shared, waiting: list, output, visibilities, isolation: str,
           window: int, retries: int) -> bool:
    running: dict = {}          # ObjectRef -> (submission, key)
    graded_now: list[str] = []
    progress = batch._Progress(len(waiting), window)
    with batch._Interrupt() as interrupt:
        while (waiting or running) and not interrupt.event.is_set():
            while waiting and len(running) < window:
                sub, key, path = waiting.pop(0)
                ref = remote.options(name=f"grade {sub.student}").remote(
                    shared, sub.student, path.read_bytes(), path.suffix, visibilities, isolation)
                running[ref] = (sub, key)
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
            if not done:
                progress.draw()
                continue
            for ref in done:
                sub, key = running.pop(ref)
                node = ""
                try:
                    outcome, node = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    outcome = batch._Outcome(None, _failure(ray, exc, retries), 0.0)
                if outcome.report is not None:
                    entry = output.record_report(sub, key, outcome)
                else:
                    entry = output.record_error(sub, key, outcome)
                if node:
                    entry["node"] = node
                output.save()
                graded_now.append(sub.student)
                progress.finished(sub.student, entry)
        progress.close()
        _warn_isolation(output, graded_now, visibilities)
        if not interrupt.event.is_set():
            return False
        if running:
            print(f"batch: interrupted; stopping the {len(running)} grade(s) sent to Ray "
                  "(their results are dropped; Ctrl-C again to quit at once)",
                  file=sys.stderr, flush=True)
            for ref in running:   # a running task gets KeyboardInterrupt: its sandbox is killed
                ray.cancel(ref)
            ray.wait(list(running), num_returns=len(running), timeout=_CANCEL_SECONDS)
    return True


def _warn_isolation(output, students: list[str], visibilities) -> None:
    """Isolation is each node's: say where it was not full."""
    levels = Counter(output.students[s].get("isolation", "") for s in students
                     if output.students[s].get("isolation"))
    basic = sorted({output.students[s].get("node", "?") for s in students
                    if output.students[s].get("isolation") not in (None, "", "full")})
    if levels:
        print("batch: isolation " + ", ".join(f"{level} {n}" for level, n in sorted(levels.items())),
              file=sys.stderr)
    if basic and visibilities == ("public", "hidden"):
        print("WARNING: some nodes graded without full isolation (basic): their Ray workers do "
              f"not run as root ({', '.join(basic[:5])})", file=sys.stderr)
