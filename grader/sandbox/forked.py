"""A forked command entering its sandbox: :func:`enter_forked`.

Run in the child: the zygote (``zygote_server.py``, which loads this
package's child side without the grader's) forks one process per job, and
that fork calls :func:`enter_forked` before it reads a byte of the job. It
arranges the job's descriptors, reports its pidfd to the grader, and becomes
the job's monitor: in full mode it unshares the namespaces and goes on as
``namespace.py``'s monitor; in basic mode it is a child subreaper that runs
the command under the limits and Landlock (``landlock.py``) in a session of
its own, and kills whatever the command leaves.

Standard library only.
"""

from __future__ import annotations

import _signal
import _socket
import fcntl
import os
import struct
from typing import Callable

from .common import (
    _PR_SET_CHILD_SUBREAPER, _libc_call, _pids, _read_stat, _report_end, _run_forked, _set_rlimits,
)  # fmt: skip
from .landlock import _landlock_restrict_self
from .namespace import _namespace_monitor

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000


def enter_forked(config: dict, received: list[int], run: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    """In a process the zygote just forked for one job: become that job's
    monitor. Never returns.

    ``received`` are the descriptors the grader sent with the request, in
    the order of :func:`start_forked`: the status socket, then pass_fds,
    then the write ends of the command's stdout and stderr. Every other
    descriptor of the zygote is closed; pass_fds land at the numbers the
    grader gave (``config["pass_fds"]``), stdout and stderr at 1 and 2,
    /dev/null at 0. The monitor then sends its own pidfd on the status
    socket, enters new mount, PID, network, IPC and UTS namespaces (what
    ``unshare`` does for an exec'd command) and goes on as
    :func:`_namespace_monitor`."""
    try:
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # the zygote ignores it
        status, *passed = received[: 1 + len(config["pass_fds"])]
        out, err = received[1 + len(config["pass_fds"]) :]
        null = os.open("/dev/null", os.O_RDONLY)
        targets = {status: config["status_fd"], null: 0, out: 1, err: 2}
        targets.update(zip(passed, config["pass_fds"]))
        _arrange_fds(targets)
        os.set_inheritable(config["status_fd"], False)
        pidfd = os.pidfd_open(os.getpid())
        _send_with_fds(config["status_fd"], f"forked {os.getpid()}\n".encode(), [pidfd])
        os.close(pidfd)
        if config.get("mode") == "basic":
            _libc_call("prctl", _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        else:
            flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS
            _libc_call("unshare", flags)
    except BaseException as exc:
        try:
            os.write(config["status_fd"], f"error cannot enter the sandbox: {exc}\n".encode())
        finally:
            os._exit(125)
    try:
        if config.get("mode") == "basic":
            _basic_monitor(config, run)
        _namespace_monitor(config, run)
    finally:
        os._exit(125)


def _basic_monitor(config: dict, run: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    """Basic mode's monitor, a child subreaper: fork the command in a session
    of its own, with the limits and the Landlock rules, report its pid and
    how it ended on the status socket, then kill and reap every process it
    left (they all come to the monitor) and exit."""
    status = config["status_fd"]
    command = os.fork()
    if command == 0:

        def setup() -> None:
            os.close(status)
            os.setsid()
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            # As _start_basic: best effort where the system refuses one.
            _set_rlimits(config["rlimits"], best_effort=True)
            os.chdir(config["workdir"])
            if config["landlock_abi"]:
                _landlock_restrict_self(config["landlock_abi"], [tuple(rule) for rule in config["landlock_rules"]])

        _run_forked(config, run, setup)
    for fd in config["pass_fds"]:  # only the command holds them now
        os.close(fd)
    os.write(status, f"ready {command}\n".encode())
    _report_end(status, command)
    _kill_children_until_none()
    os._exit(0)


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


def _send_with_fds(fd: int, data: bytes, fds: list[int]) -> None:
    sock = _socket.socket(fileno=fd)
    try:
        sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])
    finally:
        sock.detach()


def _arrange_fds(targets: dict[int, int]) -> None:
    """Make each descriptor ``source`` of ``targets`` appear at its target
    number, inheritable, and close every other descriptor of 3 or above."""
    floor = max([*targets, *targets.values()]) + 1
    moved = {fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, floor): target for source, target in targets.items()}
    keep = set(moved)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory listing's own descriptor
    for temporary, target in moved.items():
        os.dup2(temporary, target, inheritable=True)
        os.close(temporary)
