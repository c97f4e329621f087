"""A forked command entering its sandbox: :func:`enter_forked`.

Run in the child: the zygote (``zygote_server.py``, which loads this
package's child side without the grader's) forks one process per job, and
that fork calls :func:`enter_forked` before it reads a byte of the job. It
arranges the job's descriptors, reports its pidfd to the grader, and becomes
the job's monitor: in full mode it unshares the namespaces and goes on as
``namespace.py``'s monitor; in basic mode it goes on as ``monitor.py``'s
monitor, a child subreaper that runs the command under the limits and
Landlock in a session of its own, and kills whatever the command leaves.

Standard library only.
"""

from __future__ import annotations

import _signal
import _socket
import ctypes
import fcntl
import os
import struct
from typing import Callable

from .common import _libc_call, _run_forked
from .monitor import _basic_monitor, _command_setup
from .namespace import _LINUX_CAPABILITY_VERSION_3, _namespace_monitor

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
        if config.get("mode") != "basic":
            flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS
            _libc_call("unshare", flags)
    except BaseException as exc:
        try:
            os.write(config["status_fd"], f"error cannot enter the sandbox: {exc}\n".encode())
        finally:
            os._exit(125)
    try:
        if config.get("mode") == "basic":
            _forked_basic_monitor(config, run)
        _namespace_monitor(config, run)
    finally:
        os._exit(125)


def _forked_basic_monitor(config: dict, run: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    """Basic mode's monitor (``monitor.py``) for a forked command: the
    command's fork sets itself up as an exec'd one would be, gives up the
    capabilities a user namespace of its own grants (exec drops them for an
    exec'd command), then runs ``run(config)``."""

    def start(failure: int) -> None:
        def setup() -> None:
            _command_setup(config, failure)
            os.close(failure)
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            if config.get("user_namespace"):
                _drop_capabilities()

        _run_forked(config, run, setup)

    _basic_monitor(config, start)


def _drop_capabilities() -> None:
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    _libc_call("capset", ctypes.byref(header), ctypes.byref(data))


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
