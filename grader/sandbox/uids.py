"""The grader's side: the unprivileged uids of full sandboxes.

Each live full sandbox runs as a uid/gid of its own, 61000-61999, leased
with an flock (:class:`_UidLease`) so that concurrent sandboxes, even of
other grader processes, never share one; once a sandbox has ended, every
process left with its uid is killed (:func:`_kill_uid`) before the uid is
handed out again.

Imported by the grader only; standard library only.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import signal
import threading
import time
from pathlib import Path

from .cgroups import Box
from .common import _pids
from .core import _CLEANUP_TIMEOUT_SECONDS, SandboxError

# Unprivileged uids/gids handed to full sandboxes, one per live sandbox.
_UID_FIRST = 61000
_UID_COUNT = 1000


class _UidLease:
    """An unprivileged uid/gid reserved for one sandbox with an flock, so that
    concurrent sandboxes (even from other grader processes) never share one
    and RLIMIT_NPROC of one never counts another's processes."""

    _counter = 0
    _counter_lock = threading.Lock()

    def __init__(self, lock_dir: Path) -> None:
        with _UidLease._counter_lock:
            _UidLease._counter += 1
            offset = os.getpid() + _UidLease._counter
        busy = _uids_of_live_processes()
        for step in range(_UID_COUNT):
            uid = _UID_FIRST + (offset + step) % _UID_COUNT
            if uid in busy or _uid_or_gid_is_named(uid):
                continue
            fd = os.open(lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid = uid
            self._fd: int | None = fd
            self.box: Box | None = None  # the sandbox's cgroup, where it has one
            return
        raise SandboxError(f"no free sandbox uid in {_UID_FIRST}-{_UID_FIRST + _UID_COUNT - 1}")

    def release(self) -> None:
        """Remove the sandbox's cgroup (killing what is left in it), then
        free the uid."""
        try:
            if self.box is not None:
                self.box.remove()
                self.box = None
        finally:
            self._release_uid()

    def _release_uid(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` until none is left."""
    deadline = time.monotonic() + _CLEANUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        found = False
        for pid in _pids():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    found = True
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
        if not found:
            return
        time.sleep(0.01)
    raise SandboxError(f"processes of sandbox uid {uid} survived SIGKILL")


def _uid_or_gid_is_named(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        pass
    try:
        grp.getgrgid(uid)
        return True
    except KeyError:
        return False


def _uids_of_live_processes() -> set[int]:
    uids = set()
    for pid in _pids():
        try:
            uids.add(os.stat(f"/proc/{pid}").st_uid)
        except OSError:
            continue
    return uids
