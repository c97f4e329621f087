"""``batch --ray [ADDRESS]``: a class graded by the tasks of a Ray cluster.

Everything but the grading loop is local batch's (``batch/run.py``): discovery,
resume keys, the gradebook, reports, summary, progress and Ctrl-C.  Here:

* **The driver prepares once.**  It plans the checks (the grading data
  included), takes the reference's outputs from the cache (``run._prepare``
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
* **One zygote per node.**  The driver starts a small actor on each node
  that grades (:class:`_ZygoteKeeper`, no CPU of its own): it owns the
  node's zygote (``zygote_relay.Relay``), which imports TensorFlow once for
  all of that node's Ray workers, however often Ray replaces them. Each
  task attaches its worker to it (``zygote.attach``) with a token made for
  this run; where a keeper did not start, did not answer, or its zygote
  fails, the worker starts a zygote of its own (or fresh children), as
  locally. The driver stops the keepers when grading ends, however it ends.
  A local instance's only node is the driver's machine: there the driver
  serves the zygote itself, started before Ray is, so that TensorFlow
  imports while Ray starts.
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
import secrets
import shutil
import socket
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .. import engine, supervise, zygote
from ..errors import GraderError, UsageError
from ..files import copy_grader
from ..report import clean_line
from ..rubric import Rubric
from ..zygote_relay import Relay
from .grading import MEMORY_PER_WORKER, Outcome, grade_one
from .progress import Interrupt, Progress

__all__ = ["LOCAL", "Connection", "check_address", "connect", "grade_all"]

LOCAL = "local"                     # --ray without an address: a Ray instance for this run
DEFAULT_RETRIES = 2
WORKER_GRADES = 25                  # grades per Ray worker process before Ray replaces it
_CONNECT_SECONDS = 10.0
_CANCEL_SECONDS = 60.0
_KEEPER_SECONDS = 60.0              # for the nodes' keepers to start (then: no relay there)
_KEEPER_STOP_SECONDS = 10.0
_HOST_PORT = re.compile(r"^(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


@dataclass
class Connection:
    """A Ray session of this process: the module, the CPUs to fill, what it is;
    the token of this run's zygote relays, and this machine's relay if it has
    one (a local instance's)."""

    ray: ModuleType
    cpus: int
    description: str
    token: str = ""
    relay: Relay | None = None

    def close(self) -> None:
        try:
            self.ray.shutdown()
        except Exception:   # shutting down is best effort: DIR is already written
            pass
        if self.relay is not None:
            self.relay.close()


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


def connect(address: str, cpus: int | None, rubric: Rubric | None = None) -> Connection:
    """Start a local Ray instance (``local``, with ``cpus`` CPUs) or join a cluster.

    With ``rubric``, a local instance's only node, this machine, gets its
    zygote first: TensorFlow imports while Ray starts (see :func:`grade_all`).
    """
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray, which is not installed here: "
                         f"{sys.executable} -m pip install -r requirements-ray.txt") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")   # no reports sent anywhere
    token = secrets.token_hex(32)
    relay = _relay(rubric, token) if rubric is not None and address == LOCAL else None
    try:
        conn = _start(ray, address, cpus)
    except BaseException:
        if relay is not None:
            relay.close()
        raise
    conn.token, conn.relay = token, relay
    return conn


def _start(ray: ModuleType, address: str, cpus: int | None) -> Connection:
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
    fit = [r for r in alive if _fits(r)]
    if not fit:   # the tasks could never be scheduled: say so rather than wait forever
        ray.shutdown()
        raise UsageError(f"--ray {address}: no node of the cluster has a CPU and "
                         f"{MEMORY_PER_WORKER // 2**20} MiB of memory free to grade")
    total = int(sum(r.get("CPU", 0) for r in fit))
    return Connection(ray, total, f"{where}: {len(alive)} node{'s' * (len(alive) != 1)}, "
                                  f"{total} CPUs")


def _fits(resources: dict) -> bool:
    """Whether a node with these resources can take a grade."""
    return resources.get("CPU", 0) >= 1 and resources.get("memory", 0) >= MEMORY_PER_WORKER


# ------------------------------------------------------------- on a node

def _relay(rubric: Rubric, token: str) -> Relay | None:
    """The zygote of this machine's grading processes, served to those that
    send ``token``; None where they would not fork from a zygote, or it
    cannot start. The children's environment is computed here, as the tasks
    do; the zygote gets the rubric's startup budget to import TensorFlow."""
    if zygote.requested_mode() == "fresh" or not zygote.possible():
        return None
    try:
        return Relay(engine._zygote_env(rubric), token, float(rubric.limits["startup_seconds"]))
    except OSError:
        return None


class _ZygoteKeeper:
    """A Ray actor on one node: the zygote that the node's grading tasks
    share (:func:`_relay`)."""

    def __init__(self, rubric: Rubric, token: str) -> None:
        self._relay = _relay(rubric, token)

    def path(self) -> str:
        """The relay's socket, or "" for none."""
        return self._relay.path if self._relay is not None else ""

    def close(self) -> None:
        if self._relay is not None:
            self._relay.close()


def _grade_on_node(shared: tuple, student: str, graded: bytes, suffix: str,
                   visibilities: tuple[str, ...], isolation: str) -> tuple[Outcome, str]:
    """One Ray task: grade one submission here, in this node's sandbox.

    ``shared`` is (rubric, plan, reference outputs, {node id: relay socket},
    the relays' token), from the object store.  The file is written as local
    batch writes it (``<student><suffix>``), so that the report reads the
    same.  Returns (outcome, where it ran).
    """
    import ray

    rubric, tasks, expected, relays, token = shared
    context = ray.get_runtime_context()
    # this task's share of the node: its other tasks grade beside it (no model child on the side)
    supervise.limit_cores(int(context.get_assigned_resources().get("CPU", 1)))
    relay = relays.get(context.get_node_id())
    if relay and zygote.requested_mode() != "fresh" and zygote.possible():
        zygote.attach(engine._zygote_env(rubric), relay, token)   # unless attached already
    with tempfile.TemporaryDirectory(prefix="grader-ray-") as tmp:
        path = Path(tmp) / f"{student}{suffix}"
        path.write_bytes(graded)
        outcome = grade_one(path, rubric, visibilities, isolation, prepared=(tasks, expected))
    node = f"{ray.util.get_node_ip_address()} ({context.get_node_id()[:8]})"
    return outcome, node


def _code_folder(scratch: Path) -> Path:
    """What a node needs of the project: the grader package and the MNIST loader."""
    folder = scratch / "code"
    copy_grader(folder)
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
    """Grade ``todo`` (as ``run.grade_all``) on Ray; returns True when interrupted."""
    ray = conn.ray
    token = conn.token or secrets.token_hex(32)
    here = {}       # this machine's relay, started with the local instance
    if conn.relay is not None:
        try:
            here = {ray.get_runtime_context().get_node_id(): conn.relay.path}
        except Exception:
            pass
    keepers = _start_keepers(ray, rubric, token, here)   # their zygotes import while we prepare
    try:
        tasks = engine.plan(rubric, visibilities)
        with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
            os.chmod(tmp, 0o711)
            expected = engine.expected_outputs(rubric, tasks, Path(tmp))   # cached by _prepare
        zygote.shutdown()   # if computing them started one here: this process grades nothing
        relays = {**_relay_paths(ray, keepers), **here}
        # one object: tasks keep their items
        shared = ray.put((rubric, tasks, expected, relays, token))
        remote = ray.remote(num_cpus=1, memory=MEMORY_PER_WORKER, max_calls=WORKER_GRADES,
                            max_retries=retries, retry_exceptions=False)(_grade_on_node)
        window = min(jobs or conn.cpus, len(todo))
        return _drive(ray, remote, shared, list(todo), output, visibilities, isolation,
                      window, retries)
    finally:
        _stop_keepers(ray, keepers)


def _start_keepers(ray, rubric: Rubric, token: str, served: dict) -> dict:
    """A :class:`_ZygoteKeeper` on each node that can grade and is not in
    ``served``: {node id: actor}. Best effort, as everything about them:
    without one, a node's workers start zygotes of their own."""
    if zygote.requested_mode() == "fresh":
        return {}
    keepers = {}
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        keeper = ray.remote(num_cpus=0, max_restarts=0)(_ZygoteKeeper)
        for node in ray.nodes():
            if node.get("Alive") and _fits(node.get("Resources", {})) \
                    and node["NodeID"] not in served:
                where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                keepers[node["NodeID"]] = keeper.options(scheduling_strategy=where).remote(
                    rubric, token)
    except Exception:   # Ray refused one: those started are stopped as usual
        pass
    return keepers


def _relay_paths(ray, keepers: dict) -> dict[str, str]:
    """{node id: relay socket} of the keepers that answered in time."""
    if not keepers:
        return {}
    try:
        asked = {keeper.path.remote(): node for node, keeper in keepers.items()}
        answered, _ = ray.wait(list(asked), num_returns=len(asked), timeout=_KEEPER_SECONDS)
    except Exception:
        return {}
    paths = {}
    for ref in answered:
        try:
            path = ray.get(ref)
        except Exception:   # its actor died, or could not start
            continue
        if path:
            paths[asked[ref]] = path
    return paths


def _stop_keepers(ray, keepers: dict) -> None:
    """Close each keeper's relay (its zygote, its socket), then end the actor."""
    if not keepers:
        return
    try:
        closing = [keeper.close.remote() for keeper in keepers.values()]
        ray.wait(closing, num_returns=len(closing), timeout=_KEEPER_STOP_SECONDS)
    except Exception:
        pass
    for keeper in keepers.values():
        try:
            ray.kill(keeper)
        except Exception:
            pass


def _drive(ray, remote, shared, waiting: list, output, visibilities, isolation: str,
           window: int, retries: int) -> bool:
    running: dict = {}          # ObjectRef -> (submission, key)
    graded_now: list[str] = []
    progress = Progress(len(waiting), window)
    with Interrupt() as interrupt:
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
                    outcome = Outcome(None, _failure(ray, exc, retries), 0.0)
                entry = output.record(sub, key, outcome)
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
