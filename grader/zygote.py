"""A warm TensorFlow: the grader's side of the zygote (``inside/zygote_server.py``).

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

Under ``batch --ray`` the grading processes of one node share one zygote:
a :class:`zygote_relay.Relay` owns it and serves it on a UNIX socket, and
each Ray worker speaks to it through a :class:`RemoteZygote`, registered by
:func:`attach` (``grader/zygote_relay.py`` says how, and why a token).
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
from .inside import zygote_server as inside_zygote

__all__ = ["MODES", "RemoteZygote", "Zygote", "attach", "for_env", "possible", "requested_mode",
           "shutdown"]

SERVER = Path(inside_zygote.__file__).resolve()
# The child's side of the sandbox package, which the zygote loads to enter a sandbox.
SANDBOX_DIR = Path(sandbox.__file__).resolve().parent
MODES = ("auto", "zygote", "fresh")
MODE_VARIABLE = "GRADER_STARTUP"
_STOP_SECONDS = 5.0
MAX_MESSAGE = 1 << 20               # a job's configuration, as inside/zygote_server.py reads it
MAX_FDS = 16
_CONNECT_SECONDS = 10.0


def requested_mode() -> str:
    """``GRADER_STARTUP``: how children start (auto, zygote or fresh)."""
    mode = os.environ.get(MODE_VARIABLE, "auto").strip().lower() or "auto"
    return mode if mode in MODES else "auto"


def possible() -> bool:
    """Whether this platform could use a zygote at all."""
    return sys.platform == "linux" and hasattr(os, "fork") and hasattr(os, "pidfd_open") \
        and hasattr(socket, "send_fds")


class _Handle:
    """What both kinds of zygote share: a socket the jobs go down, and a state
    (starting, ready, failed or closed) kept under a lock. A failure is for
    good: :meth:`_stop` ends what the handle holds."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._lock = threading.Lock()
        self._state = "starting"
        self.reason = ""

    def request(self, config: dict, fds: list[int]) -> None:
        """Hand one job to the zygote (see :func:`sandbox.start_forked`)."""
        message = json.dumps(config).encode()
        with self._lock:
            if self._state != "ready":
                raise OSError(f"the zygote is not ready: {self.reason}")
            if len(message) > MAX_MESSAGE or len(fds) > MAX_FDS:
                raise OSError("the job is larger than the zygote reads")
            socket.send_fds(self._socket, [message], fds)

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
        self._socket.close()


class Zygote(_Handle):
    """One zygote process, started at once; ask :meth:`ready` before use."""

    def __init__(self, env: dict[str, str]) -> None:
        self._home = tempfile.mkdtemp(prefix="grader-zygote-")
        os.chmod(self._home, 0o700)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child_env = dict(env, HOME=self._home, TMPDIR=self._home)
        child_env[inside_zygote.FD_VARIABLE] = str(theirs.fileno())
        super().__init__(ours)
        self._proc: subprocess.Popen | None = None
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-s", "-B", str(SERVER), str(SANDBOX_DIR)], cwd=self._home, env=child_env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),))
        except OSError as exc:
            self._fail(f"cannot start: {exc}")
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


class RemoteZygote(_Handle):
    """A zygote that another process of this machine serves (a
    :class:`zygote_relay.Relay`): the same interface as :class:`Zygote`.

    It connects at once and sends ``token`` (the relay closes a connection
    that does not); the relay answers ``ready PID`` or ``failed WHY`` once
    its zygote has imported TensorFlow, and then forwards each job sent
    here to it, descriptors included. ``pid`` is the zygote's, as the relay
    said (None before).
    """

    def __init__(self, path: str, token: str) -> None:
        super().__init__(socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        self.pid: int | None = None
        try:
            self._socket.settimeout(_CONNECT_SECONDS)
            self._socket.connect(path)
            # whoever listens there gets the token: only a process of our own user
            if _peer_uid(self._socket) != os.getuid():
                raise OSError("it is another user's socket")
            self._socket.send(token.encode())
            self._socket.settimeout(None)
        except OSError as exc:
            self._fail(f"cannot reach this node's zygote: {exc.strerror or exc}")

    def ready(self, timeout: float) -> bool:
        """As :meth:`Zygote.ready`: the relay's answer, within ``timeout`` seconds."""
        with self._lock:
            if self._state == "starting":
                answer = ""
                if select.select([self._socket], [], [], max(0.0, timeout))[0]:
                    try:
                        answer = self._socket.recv(4096).decode(errors="replace")
                    except OSError:
                        pass
                else:
                    answer = f"failed it did not import TensorFlow in {timeout:g} s"
                word, _, rest = answer.partition(" ")
                if word == "ready" and rest.isdigit():
                    self._state, self.pid = "ready", int(rest)
                else:
                    self._fail(rest if word == "failed" else "the node's zygote hung up")
            return self._state == "ready"


def _peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a UNIX socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder)


_zygotes: dict[tuple, Zygote | RemoteZygote] = {}
_registry_lock = threading.Lock()


def _key(env: dict[str, str]) -> tuple:
    return tuple(sorted(env.items()))


def for_env(env: dict[str, str]) -> Zygote | RemoteZygote:
    """The zygote for children with environment ``env`` (without HOME and
    TMPDIR, which each child gets its own of), started now if need be: the
    one :func:`attach` gave while it works, else one of this process."""
    key = _key(env)
    with _registry_lock:
        zygote = _zygotes.get(key)
        if zygote is None or not zygote.alive:
            zygote = _zygotes[key] = Zygote(env)
        return zygote


def attach(env: dict[str, str], path: str, token: str) -> None:
    """Let children with environment ``env`` fork from the zygote that the
    relay at ``path`` serves, unless a working zygote is there already.
    When it fails, :func:`for_env` starts one of this process instead."""
    key = _key(env)
    with _registry_lock:
        current = _zygotes.get(key)
        if current is None or not current.alive:
            _zygotes[key] = RemoteZygote(path, token)


def shutdown() -> None:
    """Stop every zygote (at exit, or to start afresh)."""
    with _registry_lock:
        zygotes = list(_zygotes.values())
        _zygotes.clear()
    for zygote in zygotes:
        zygote.close()


atexit.register(shutdown)

