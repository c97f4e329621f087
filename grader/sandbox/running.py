"""The grader's side: a running sandbox, :class:`SandboxedProcess`.

What :func:`start` and :func:`start_forked` return: it drains the command's
stdout and stderr on threads (capped), watches the grader's child (unshare,
the command, or the zygote-forked monitor through its pidfd), reads how the
command ended from the status pipe, kills the whole tree on request and
cleans up after it (the basic run's strays, the full sandbox's uid).

Imported by the grader only; standard library only.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from .cgroups import Box
from .common import _read_stat
from .core import _CLEANUP_TIMEOUT_SECONDS, _SETUP_TIMEOUT_SECONDS, Limits, RunResult, SandboxError
from .processes import _kill_strays, untrack
from .uids import _UidLease, _kill_uid

_READ_CHUNK = 1 << 20
_PIPE_SIZE = 1 << 20


class SandboxedProcess:
    """A running sandboxed command. Create it with :func:`start`.

    ``pid`` is the grader's direct child: the monitor, ``__main__.py
    --basic-monitor`` (``monitor.py``) in ``basic`` mode, ``unshare`` exec'd
    into ``__main__.py --namespace-init`` in ``full`` mode.
    Use it as a context manager to have the whole tree killed on exit.

    ``resources`` says what holds the sandbox's resources together, for
    reports: its cgroup (``"cgroup v1 (memory, pids)"``) or why it has
    none, and in basic mode whether it counts its tasks in a user namespace
    of its own (see ``basic.py``).

    ``isolation`` is ``"full"`` or ``"basic"``; ``confinement`` says what
    confines the command beyond the resource limits, for reports: in basic
    mode ``"landlock abi N: filesystem, tcp network, signals, abstract unix
    sockets"`` (what that kernel's ABI covers) or ``"none: WHY"``, followed
    by ``" (so the hidden paths stay readable)"`` when :func:`start` was
    given ``hidden`` paths that basic mode without Landlock cannot hide.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        isolation: str,
        limits: Limits,
        started: float,
        *,
        confinement: str,
        token: str | None = None,
        status_fd: int | None = None,
        init_pid: int | None = None,
        uid_lease: _UidLease | None = None,
        group: int | None = None,
        box: Box | None = None,
        resources: str = "",
    ) -> None:
        self.pid = popen.pid
        self.isolation = isolation
        self.confinement = confinement
        self._popen = popen
        self._started = started
        self._token = token
        self._group = group  # a basic command's process group (the monitor's is not it)
        self._box = box  # a basic sandbox's cgroup
        self.resources = resources
        self._reports_status = status_fd is not None
        self._status_fd = status_fd
        self._init_pidfd = _open_pidfd(init_pid, popen.pid) if init_pid else None
        self._init_pid = init_pid
        self._uid_lease = uid_lease
        self._stdout = _CappedReader(popen.stdout, limits.output_bytes, "stdout")
        self._stderr = _CappedReader(popen.stderr, limits.output_bytes, "stderr")
        self._lock = threading.Lock()
        self._killed_by_us = False
        self._out_of_memory = False
        self._cleanup_error: SandboxError | None = None
        self._ended: float | None = None
        self._status_text = ""
        self._done = threading.Event()
        threading.Thread(target=self._watch, name=f"sandbox-wait-{self.pid}", daemon=True).start()

    def __enter__(self) -> SandboxedProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def poll(self) -> int | None:
        """The return code once the command has ended (see RunResult), else None."""
        return self._returncode() if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the command to end; None when ``timeout`` seconds pass first."""
        if not self._done.wait(timeout):
            return None
        return self._returncode()

    def kill(self) -> None:
        """Kill the whole process tree and reap it. Idempotent; returns once
        no process of the run is left."""
        with self._lock:
            if not self._done.is_set() and self._ended is None:
                self._killed_by_us = True
        if self.isolation == "full":
            self._kill_full()
        else:
            self._kill_basic()
        if not self._done.wait(_CLEANUP_TIMEOUT_SECONDS):
            raise SandboxError(f"sandbox {self.pid} survived SIGKILL for {_CLEANUP_TIMEOUT_SECONDS:g} s")
        if self.isolation == "basic":
            _kill_strays(self._token)
        if self._cleanup_error is not None:
            raise self._cleanup_error

    def result(self) -> RunResult:
        """The outcome; only after the command has ended (wait() or kill())."""
        if not self._done.is_set():
            raise RuntimeError("the sandboxed command is still running: call wait() or kill() first")
        returncode = self._returncode()
        assert self._ended is not None
        return RunResult(
            returncode=returncode,
            signal=-returncode if returncode < 0 else None,
            stdout=self._stdout.text(),
            stderr=self._stderr.text(),
            stdout_truncated=self._stdout.truncated,
            stderr_truncated=self._stderr.truncated,
            wall_seconds=self._ended - self._started,
            killed_by_us=self._killed_by_us,
            out_of_memory=self._out_of_memory,
        )

    # -- internals ---------------------------------------------------------

    def _kill_full(self) -> None:
        # SIGKILL to the namespace's init kills every process in it; unshare
        # then exits once they are all gone. Killing unshare instead would
        # return before the namespace is empty.
        with self._lock:  # _watch closes the pidfd under this lock
            if self._done.is_set():
                return
            if self._init_pidfd is not None:
                try:
                    signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
                    return
                except ProcessLookupError:
                    return
                except OSError:
                    pass
            stat = _read_stat(self._init_pid) if self._init_pid else None
            if stat is not None and stat[0] == self.pid:  # without pidfds: still the monitor's child
                os.kill(self._init_pid, signal.SIGKILL)
            else:
                self._send_to_child(signal.SIGKILL)  # the monitor's death sends init SIGKILL

    def _kill_basic(self) -> None:
        if self._done.is_set():
            return
        if self._group is not None:  # the command first: its monitor would reap it
            try:
                os.killpg(self._group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._send_to_child(signal.SIGKILL)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _send_to_child(self, signum: int) -> None:
        try:
            self._popen.send_signal(signum)  # a no-op once reaped
        except ProcessLookupError:
            pass

    def _watch(self) -> None:
        self._popen.wait()
        with self._lock:
            self._ended = time.monotonic()
        untrack(self.pid)
        try:
            if self.isolation == "basic":
                if self._reports_status:
                    self._status_text = _read_available(self._status_fd)
                    self._out_of_memory = "oom" in self._status_text.splitlines()
                    self._close_full_handles()
                _kill_strays(self._token)
                if self._box is not None:
                    self._out_of_memory = self._out_of_memory or self._box.out_of_memory()
                    try:
                        self._box.remove()
                    except SandboxError as exc:
                        self._cleanup_error = exc
            else:
                self._status_text = _read_available(self._status_fd)
                self._out_of_memory = "oom" in self._status_text.splitlines()  # the monitor saw it
                self._close_full_handles()
        finally:
            self._done.set()

    def _close_full_handles(self) -> None:
        with self._lock:
            for fd in (self._status_fd, self._init_pidfd):
                if fd is not None:
                    os.close(fd)
            self._status_fd = self._init_pidfd = None
        # unshare exits only after the init process, and the kernel empties a
        # PID namespace before its init is reaped, so nothing should run as
        # the sandbox's uid any more; make sure before handing the uid out again.
        if self._uid_lease is not None:
            box = self._uid_lease.box
            self._out_of_memory = self._out_of_memory or (box is not None and box.out_of_memory())
            try:
                _kill_uid(self._uid_lease.uid)
                self._uid_lease.release()  # removes the cgroup, killing what is left in it
            except SandboxError as exc:
                self._cleanup_error = exc
            self._uid_lease = None

    def _returncode(self) -> int:
        returncode = self._popen.returncode
        assert returncode is not None
        if self.isolation == "full" or self._reports_status:
            # The init process reports how the command ended: unshare's own
            # status only tells how the init process ended.
            for line in self._status_text.splitlines():
                kind, _, value = line.partition(" ")
                if kind == "exit":
                    return int(value)
                if kind == "signal":
                    return -int(value)
            if self._killed_by_us:
                return -signal.SIGKILL
        return returncode


class _CappedReader:
    """Drains a pipe on a thread, keeping only its first ``cap`` bytes."""

    def __init__(self, stream, cap: int, name: str) -> None:  # type: ignore[no-untyped-def]
        self._stream = stream
        self._cap = cap
        self._data = bytearray()
        self.truncated = False
        try:
            fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except (AttributeError, OSError):
            pass  # a bigger pipe only saves system calls
        self._thread = threading.Thread(target=self._drain, name=f"sandbox-{name}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        fd = self._stream.fileno()
        try:
            while chunk := os.read(fd, _READ_CHUNK):
                room = self._cap - len(self._data)
                if room > 0:
                    self._data += chunk[:room]
                if len(chunk) > room:
                    self.truncated = True
        finally:
            self._stream.close()

    def text(self) -> str:
        self._thread.join(_CLEANUP_TIMEOUT_SECONDS)
        return bytes(self._data).decode("utf-8", errors="replace")


def _read_available(fd: int | None) -> str:
    if fd is None:
        return ""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _open_pidfd(pid: int, parent: int) -> int | None:
    """A pidfd for ``pid``, only if it is still ``parent``'s child (so that a
    recycled pid is never signalled)."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    stat = _read_stat(pid)
    if stat is None or stat[0] != parent:
        os.close(pidfd)
        return None
    return pidfd


class _ForkedMonitor:
    """What :class:`SandboxedProcess` uses of a Popen, for a monitor that the
    zygote forked (not the grader's child: it is watched and signalled
    through its pidfd)."""

    #: How the monitor ended is not ours to see; the init's status line says
    #: how the command ended, and its absence means the sandbox did not start.
    _EXIT_UNKNOWN = 125

    def __init__(self, pid: int, pidfd: int, stdout, stderr) -> None:  # type: ignore[no-untyped-def]
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:  # readable once it exited
                return None
            with self._lock:
                self.returncode = self._EXIT_UNKNOWN
                os.close(self._pidfd)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        with self._lock:
            if self.returncode is None:
                try:
                    signal.pidfd_send_signal(self._pidfd, signum)
                except ProcessLookupError:
                    pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        self.wait(timeout)
        return self.stdout.read(), self.stderr.read()


def _first_status_line(status_r: int) -> str:
    """What the init process reports once the sandbox is built ("ready PID")
    or failed ("error WHY"); "" if it dies or takes too long first."""
    deadline = time.monotonic() + _SETUP_TIMEOUT_SECONDS
    received = b""
    while b"\n" not in received:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([status_r], [], [], remaining)[0]:
            return ""
        chunk = os.read(status_r, 4096)
        if not chunk:
            return ""
        received += chunk
    return received.partition(b"\n")[0].decode(errors="replace")


def _abandon(
    popen: subprocess.Popen[bytes] | _ForkedMonitor, status_r: int, lease: _UidLease | None, reason: str
) -> None:
    """Kill a sandbox that did not start and raise SandboxError saying why."""
    try:
        popen.kill()
        _, stderr = popen.communicate(timeout=_CLEANUP_TIMEOUT_SECONDS)
    finally:
        untrack(popen.pid)
        os.close(status_r)
        if lease is not None:
            lease.release()
    reasons = [reason] if reason else []
    reasons += stderr.decode(errors="replace").strip().splitlines()[-1:]
    raise SandboxError("the full sandbox did not start: " + ("; ".join(reasons) or "no reason given"))


def _await_ready(popen: subprocess.Popen[bytes] | _ForkedMonitor, status_r: int, lease: _UidLease | None) -> str:
    """VALUE of the sandbox's "ready VALUE" status line (the init's host pid,
    or a forked basic command's pid); the status pipe is non-blocking from
    then on. A sandbox that did not start is killed, and SandboxError says why."""
    kind, _, value = _first_status_line(status_r).partition(" ")
    if kind != "ready":
        _abandon(popen, status_r, lease, value if kind == "error" else "")
    os.set_blocking(status_r, False)
    return value


def _self_test(start: Callable[[list[str], Path], SandboxedProcess], code: str, prefix: str,
               holds: Callable[[RunResult, Path], bool]) -> str:
    """Run the Python ``code`` with ``start`` in a fresh temporary work
    directory: "" when it exits 0 and ``holds(result, workdir)``, else
    "could not start: WHY" or "failed: WHY"."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp).resolve()
        try:
            proc = start([sys.executable, "-I", "-S", "-c", code], workdir)
        except SandboxError as exc:
            return f"could not start: {exc}"
        if proc.wait(_SETUP_TIMEOUT_SECONDS) is None:
            proc.kill()
        result = proc.result()
        if result.returncode != 0 or not holds(result, workdir):
            detail = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
            return f"failed: {detail[0]}"
    return ""
