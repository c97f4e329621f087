"""A warm TensorFlow: the grader's side of the zygote (``zygote_server.py``).

Importing TensorFlow takes most of a grade. A zygote is a process that has
imported it (and the child's side of the grader, nothing else) and forks a
child per job; the child enters the same full sandbox as a fresh one before it
reads the job (:func:`sandbox.start_forked`). One zygote serves every grade of
this process (a batch's worker threads share it), per child environment.

It is used only where forking is known to be safe: Linux with pidfds, a
TensorFlow that starts no thread at import and whose forked copy runs a
session (the zygote checks both before it says ``ready``). A forked child
enters the sandbox of the isolation level granted (full: namespaces, root,
uid; basic: limits, Landlock, a session of its own). Anywhere else, and
whenever the zygote fails, the grader starts a fresh process as before.
``GRADER_STARTUP`` chooses: ``auto`` (the default), ``zygote`` or ``fresh``.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import sandbox

__all__ = ["MODES", "Zygote", "for_env", "possible", "requested_mode", "shutdown"]

SERVER = Path(__file__).resolve().parent / "zygote_server.py"
MODES = ("auto", "zygote", "fresh")
MODE_VARIABLE = "GRADER_STARTUP"
_STOP_SECONDS = 5.0


def requested_mode() -> str:
    """``GRADER_STARTUP``: how children start (auto, zygote or fresh)."""
    mode = os.environ.get(MODE_VARIABLE, "auto").strip().lower() or "auto"
    return mode if mode in MODES else "auto"


def possible() -> bool:
    """Whether this platform could use a zygote at all."""
    return sys.platform == "linux" and hasattr(os, "fork") and hasattr(os, "pidfd_open") \
        and hasattr(socket, "send_fds")


class Zygote:
    """One zygote process, started at once; ask :meth:`ready` before use."""

    def __init__(self, env: dict[str, str]) -> None:
        self._home = tempfile.mkdtemp(prefix="grader-zygote-")
        os.chmod(self._home, 0o700)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child_env = dict(env, HOME=self._home, TMPDIR=self._home)
        child_env["GRADER_ZYGOTE_FD"] = str(theirs.fileno())
        self._socket = ours
        self._lock = threading.Lock()
        self._state = "starting"
        self.reason = ""
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-s", "-B", str(SERVER)], cwd=self._home, env=child_env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),))
        except OSError as exc:
            self._fail(f"cannot start: {exc}")
            self._proc = None
        finally:
            theirs.close()
        if self._proc is not None:
            sandbox.track(self._proc.pid)  # basic mode's clean-up must leave it alone

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def ready(self, timeout: float) -> bool:
        """Whether it is ready to fork, waiting up to ``timeout`` seconds for
        its import; False (for good) when it refused, died or took longer."""
        with self._lock:
            if self._state == "starting":
                if select.select([self._socket], [], [], max(0.0, timeout))[0]:
                    answer = self._socket.recv(4096).decode(errors="replace")
                    if answer == "ready":
                        self._state = "ready"
                    else:
                        self._fail(answer.removeprefix("unsafe ") or "it exited while starting")
                else:
                    self._fail(f"it did not import TensorFlow in {timeout:g} s")
            return self._state == "ready"

    def request(self, config: dict, fds: list[int]) -> None:
        """Hand one job to the zygote (see :func:`sandbox.start_forked`)."""
        with self._lock:
            if self._state != "ready":
                raise OSError(f"the zygote is not ready: {self.reason}")
            socket.send_fds(self._socket, [json.dumps(config).encode()], fds)

    def broken(self, why: str) -> None:
        """It failed to fork a job: stop using it."""
        with self._lock:
            self._fail(why)

    @property
    def alive(self) -> bool:
        return self._state in ("starting", "ready")

    def _fail(self, why: str) -> None:
        if self._state in ("starting", "ready"):
            self._state, self.reason = "failed", why
            self._stop()

    def close(self) -> None:
        with self._lock:
            if self._state != "closed":
                self._state = "closed"
                self._stop()

    def _stop(self) -> None:
        self._socket.close()  # it exits when it sees the socket close
        if self._proc is not None:
            try:
                self._proc.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            sandbox.untrack(self._proc.pid)
        shutil.rmtree(self._home, ignore_errors=True)


_zygotes: dict[tuple, Zygote] = {}
_registry_lock = threading.Lock()


def for_env(env: dict[str, str]) -> Zygote:
    """The zygote for children with environment ``env`` (without HOME and
    TMPDIR, which each child gets its own of), started now if need be."""
    key = tuple(sorted(env.items()))
    with _registry_lock:
        zygote = _zygotes.get(key)
        if zygote is None or not zygote.alive:
            zygote = _zygotes[key] = Zygote(env)
        return zygote


def shutdown() -> None:
    """Stop every zygote (at exit, or to start afresh)."""
    with _registry_lock:
        zygotes = list(_zygotes.values())
        _zygotes.clear()
    for zygote in zygotes:
        zygote.close()


atexit.register(shutdown)

