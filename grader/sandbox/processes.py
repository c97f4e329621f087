"""The grader's side: the grader's own children and the process table.

Which pids the package started and has not reaped yet (:func:`track`,
:func:`untrack`: basic mode's clean-up kills the grader's other children
that started their own session, never these), the grader as a child
subreaper, and the clean-up that finds what a basic run left in ``/proc``.

Imported by the grader only; standard library only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from .common import _PR_SET_CHILD_SUBREAPER, _libc_call, _pids, _read_stat
from .core import _CLEANUP_TIMEOUT_SECONDS, TOKEN_VARIABLE, SandboxError

# Pids of the children this package started and has not reaped yet. The basic
# mode's cleanup kills the grader's other children, never these.
_tracked_lock = threading.Lock()
_tracked_pids: set[int] = set()

_subreaper_lock = threading.Lock()
_subreaper_set = False


def track(pid: int) -> None:
    """Mark ``pid``, a child of the grader that starts a session of its own
    (the zygote), as one that basic mode's clean-up must leave alone."""
    with _tracked_lock:
        _tracked_pids.add(pid)


def untrack(pid: int) -> None:
    """Forget ``pid`` (see :func:`track`) once it is reaped or about to be."""
    with _tracked_lock:
        _tracked_pids.discard(pid)


def _become_subreaper() -> None:
    """Make orphaned descendants re-parent to this process (once)."""
    global _subreaper_set
    with _subreaper_lock:
        if _subreaper_set or sys.platform != "linux":
            return
        try:
            _libc_call("prctl", _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except OSError as exc:
            raise SandboxError(f"prctl(PR_SET_CHILD_SUBREAPER): {exc.strerror}") from None
        _subreaper_set = True


def _kill_strays(token: str | None) -> None:
    """Kill and reap what a basic run left: orphans re-parented to us that
    are in another session than ours and not tracked, and any process whose
    environment carries ``token``. Repeats until a pass finds nothing."""
    if not os.path.isdir("/proc/self"):
        return
    me, my_session = os.getpid(), os.getsid(0)
    needle = f"{TOKEN_VARIABLE}={token}".encode() if token else None
    deadline = time.monotonic() + _CLEANUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with _tracked_lock:
            orphans, marked = [], []
            for pid in _pids():
                stat = _read_stat(pid)
                if stat is None:
                    continue
                ppid, session = stat
                if ppid == me and session != my_session and pid not in _tracked_pids:
                    orphans.append(pid)
                elif needle is not None and _environ_contains(pid, needle):
                    marked.append(pid)
            for pid in orphans + marked:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not orphans and not marked:
            return
        for pid in orphans:
            _reap(pid, deadline)
        if marked:
            time.sleep(0.01)  # their own parents (ours, re-parented) reap them
    raise SandboxError("could not kill every process of a basic sandbox run")


def _reap(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.002)


def _environ_contains(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return needle in file.read().split(b"\0")
    except OSError:
        return False


def _count_tasks_of_uid(uid: int) -> int:
    """Processes and threads whose real uid is ``uid`` (what RLIMIT_NPROC counts)."""
    if not os.path.isdir("/proc/self"):
        return 0
    total = 0
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/status") as file:
                status = dict(line.split(":", 1) for line in file if ":" in line)
            if int(status["Uid"].split()[0]) == uid:
                total += int(status["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return total

def _popen_tracked(command: list[str], **options: object) -> subprocess.Popen[bytes]:
    """Start ``command`` as a tracked child, stdin from /dev/null, stdout and
    stderr piped: under the lock, so that no clean-up sees it untracked."""
    with _tracked_lock:
        popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options  # type: ignore[call-overload]
        )
        _tracked_pids.add(popen.pid)
    return popen
