"""Helpers that both sides of the sandbox share: the C library, paths and the
status line a monitor or an init process writes for the grader.

Standard library only: the child-side programs (``landlock.py``,
``namespace.py``, ``forked.py``) import it before any command runs, and so
does the grader's side.
"""

from __future__ import annotations

import ctypes
import os
import resource
from typing import Callable

# prctl options (linux/prctl.h).
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36


def _libc_call(function: str, *args: object) -> int:
    """Call the C library's ``function``, passing integers as C longs (as
    variadic ``syscall`` and ``prctl`` read them); OSError when it fails."""
    call = getattr(ctypes.CDLL(None, use_errno=True), function)
    call.restype = ctypes.c_long
    result = call(*(ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args))
    if result == -1:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result


def _is_within(path: str, tree: str) -> bool:
    """Whether ``path`` is ``tree`` or lies below it (both absolute, normalised)."""
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _join_cgroup(procs_files: list[str] | tuple[str, ...]) -> None:
    """Move this process into a cgroup: ``0`` written to each of its
    ``cgroup.procs`` files (one per v1 hierarchy, one for v2)."""
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _oom_events(memory: str | None) -> int | None:
    """An eventfd that becomes readable when the cgroup v1 memory cgroup
    ``memory`` runs out of memory (its OOM notification), or None (no such
    cgroup, or the kernel refuses). Made after the sandbox's first fork, so
    that no process of the sandbox holds it."""
    if not memory:
        return None
    try:
        events = os.eventfd(0, os.EFD_CLOEXEC)
        control = os.open(os.path.join(memory, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        register = os.open(os.path.join(memory, "cgroup.event_control"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(register, f"{events} {control}".encode())
        finally:
            os.close(register)
        return events
    except (AttributeError, OSError):
        return None


_CLONE_NEWUSER = 0x10000000


def _enter_user_namespace() -> None:
    """Move this process (single-threaded) into a new user namespace in
    which its uid and gid map to themselves: from Linux 5.14 the kernel
    counts RLIMIT_NPROC per user namespace, so the tasks of one sandbox are
    counted apart from the user's others (which still count, all together,
    against the limit of the process that made the namespace)."""
    uid, gid = os.getuid(), os.getgid()
    _libc_call("unshare", _CLONE_NEWUSER)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def _pidfd(pid: int) -> int | None:
    """A pidfd of ``pid``: None when it is gone, -1 when this system has none."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):
        return -1


def _watch_grader(grader: list[int] | None) -> int | None:
    """A pidfd of the grader (``grader``: its pid and start time), -1 when
    this system has none or no grader is given, None when it is gone already."""
    if not grader:
        return -1
    watched = _pidfd(grader[0])
    if watched is not None and watched >= 0 and _start_time(grader[0]) != grader[1]:
        os.close(watched)
        return None
    return watched


def _set_rlimits(rlimits: list[tuple[int, int, int]], *, best_effort: bool = False) -> None:
    """Set each (resource, soft, hard) of ``rlimits`` on this process; with
    ``best_effort``, skip those the system refuses."""
    for which, soft, hard in rlimits:
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            if not best_effort:
                raise


def _run_forked(config: dict, run: Callable[[dict], None], setup: Callable[[], None]) -> None:  # type: ignore[type-arg]
    """In a forked command's own process: ``setup()``, what exec'ing a
    command would have done, then ``run(config)``. Never returns: status
    127 when either fails."""
    try:
        setup()
    except BaseException as exc:
        os.write(2, f"sandbox: cannot start the forked command: {exc}\n".encode())
        os._exit(127)
    try:
        run(config)
    finally:
        os._exit(127)


def _report_end(status: int, command: int) -> None:
    """Reap children until ``command`` ends, then write how it ended on
    ``status`` ("exit N" or "signal N"): what the grader's side reads."""
    while True:
        pid, wait_status = os.wait()
        if pid == command:
            if os.WIFSIGNALED(wait_status):
                os.write(status, f"signal {os.WTERMSIG(wait_status)}\n".encode())
            else:
                os.write(status, f"exit {os.waitstatus_to_exitcode(wait_status)}\n".encode())
            return


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` from the state on (field 3), or None
    when ``pid`` is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()


def _read_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid``, or None when it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[1]), int(fields[3]))


def _start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (with the pid, what
    tells a process from a later one that reuses its pid), or None when it
    is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])
