"""Basic mode's monitor, the child's side: the one process between the grader
and a basic-mode command.

Run in the child: exec'd by the grader as ``__main__.py --basic-monitor
CONFIG`` for a command it execs (:func:`_exec_monitor`), or called by the
zygote's fork for a forked command (``forked.py``). The monitor is a child
subreaper. Before it forks the command it joins the sandbox's cgroup, where
there is one, and, where the grader asks, enters a user namespace of its
own (so that the kernel counts the sandbox's tasks apart from the user's
others: see ``basic.py``). It starts the command in a session of its own
with the limits and the Landlock rules, reports the command's pid and how
it ended on the status pipe, then kills every process the command left
(they all come to the monitor) and exits. It watches the grader through a
pidfd: should the grader end first (a signal, SIGKILL included), it kills
the command and everything it left at once.

Standard library only.
"""

from __future__ import annotations

import _signal
import os
import select
from typing import Callable

from .common import (
    _PR_SET_CHILD_SUBREAPER, _enter_user_namespace, _join_cgroup, _libc_call, _oom_events, _pids,
    _read_stat, _report_end, _set_rlimits, _watch_grader,
)  # fmt: skip
from .landlock import _landlock_restrict_self


def _basic_monitor(config: dict, start: Callable[[int], None]) -> None:  # type: ignore[type-arg]
    """Be the monitor of ``config``'s command. ``start(failure_fd)`` runs in
    the command's fresh fork and never returns; it writes why on
    ``failure_fd`` if the command cannot start, and closes it (exec does)
    once it has. Never returns."""
    status = config["status_fd"]
    try:
        _libc_call("prctl", _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        _join_cgroup(config.get("cgroup_procs", ()))
        if config.get("user_namespace"):
            _enter_user_namespace()
        grader = _watch_grader(config.get("grader"))
        failure_r, failure_w = os.pipe()
    except OSError as exc:
        os.write(status, f"error cannot enter the sandbox: {exc}\n".encode())
        os._exit(125)
    command = os.fork()
    if command == 0:
        os.close(failure_r)
        try:
            start(failure_w)
        finally:
            os._exit(127)
    os.close(failure_w)
    for fd in config["pass_fds"]:  # only the command holds them now
        os.close(fd)
    failure = _read_all(failure_r)
    if failure:
        os.write(status, f"error {failure}\n".encode())
        os.waitpid(command, 0)
        os._exit(125)
    os.write(status, f"ready {command}\n".encode())
    if _await_command(command, grader, _oom_events(config.get("oom_watch"))):
        os.write(status, b"oom\n")
    _report_end(status, command)
    _kill_children_until_none()
    os._exit(0)


def _command_setup(config: dict, failure: int) -> None:  # type: ignore[type-arg]
    """In the command's fork, before it runs anything of its own: a session
    of its own, the limits (best effort, as where the system refuses one),
    the work directory and the Landlock rules."""
    os.close(config["status_fd"])
    os.setsid()
    _set_rlimits(config["rlimits"], best_effort=True)
    os.chdir(config["workdir"])
    if config["landlock_abi"]:
        _landlock_restrict_self(config["landlock_abi"], [tuple(rule) for rule in config["landlock_rules"]])


def _exec_monitor(config: dict) -> None:  # type: ignore[type-arg]
    """``__main__.py --basic-monitor CONFIG``: the monitor of an exec'd
    command (``config["argv"]``, searched in its environment's PATH)."""

    def start(failure: int) -> None:
        try:
            _command_setup(config, failure)
            # The interpreter ignores these two signals, and exec would keep that.
            for signum in (_signal.SIGPIPE, _signal.SIGXFSZ):
                _signal.signal(signum, _signal.SIG_DFL)
            os.execvpe(config["argv"][0], config["argv"], config["env"])
        except BaseException as exc:
            why = str(exc)
            if isinstance(exc, OSError) and exc.strerror:
                why = exc.strerror + (f": {exc.filename}" if exc.filename else "")
            os.write(failure, why.encode(errors="replace")[:2000] or b"failed")

    _basic_monitor(config, start)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace").replace("\n", " ")


def _await_command(command: int, grader: int | None, oom: int | None = None) -> bool:
    """Return once ``command`` has ended; should the grader end first, or
    the sandbox's cgroup v1 run out of memory (``oom``, an eventfd: the
    whole sandbox ends, as with cgroup v2's ``memory.oom.group``), kill the
    command's session first (its monitor then reaps it). True when the
    sandbox ran out of memory."""
    if grader == -1:
        return False  # no pidfds here: the grader's own clean-up is all there is
    out_of_memory = False
    if grader is not None:
        command_fd = os.pidfd_open(command)  # our child: its pid is not reused before the wait
        ended = select.select([grader, command_fd, *([oom] if oom is not None else [])], [], [])[0]
        os.close(command_fd)
        out_of_memory = oom is not None and oom in ended
        if grader not in ended and not out_of_memory:
            return False
    for kill in (os.killpg, os.kill):
        try:
            kill(command, _signal.SIGKILL)
        except OSError:
            pass
    return out_of_memory


def _kill_children_until_none() -> None:
    """Kill this process's children, and those re-parented to it as their
    parents die (it is a subreaper), until it has none left."""
    me = os.getpid()
    while True:
        for pid in _pids():
            stat = _read_stat(pid)
            if stat is not None and stat[0] == me:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except OSError:
                    continue
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
