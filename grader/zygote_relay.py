"""One zygote for every grading process of a machine: a relay that serves it.

``batch --ray`` grades in Ray worker processes, several on a node and
replaced every few dozen grades; each would import TensorFlow into a zygote
of its own. Instead a process of the node (a Ray actor, ``batch/ray.py``)
owns one :class:`Relay`: a :class:`zygote.Zygote` and a SOCK_SEQPACKET UNIX
socket in a fresh directory of mode 0700. Each Ray worker connects a
:class:`zygote.RemoteZygote` (``zygote.attach``) and hands its jobs to it,
exactly as it would to its own zygote; the relay forwards each job, its
descriptors included, and keeps no copy of them (a pipe's reader sees
end-of-file only when every copy of its write end is closed).

The conversation on one connection, one message each:

* the client sends the token; the relay closes a connection that sends
  anything else, or nothing within :data:`HELLO_SECONDS`;
* the relay answers ``ready PID`` once its zygote has imported TensorFlow,
  or ``failed WHY`` (and closes);
* each message after that is one job: a JSON sandbox configuration (at most
  :data:`zygote.MAX_MESSAGE` bytes) with at most :data:`zygote.MAX_FDS`
  descriptors, which the relay passes to ``Zygote.request``. The relay never
  answers a job: the forked process reports on the status socket the job
  carries. A message that is not a job, or a zygote that cannot take it,
  ends the connection: the client sees the status socket close, and starts
  that child fresh.

Why a token: a connection to the relay is a fork of the zygote with a
configuration of the caller's choosing, so only the grader may have one.
In full isolation a submission runs as another uid, in a mount namespace
whose root holds no such socket; the directory's mode and the peer's uid
(SO_PEERCRED) stop it anyway. In basic isolation a submission runs as the
grader's own user, and Landlock does not stop a connection to a UNIX socket
by its path: only the token does. It is never in a process's arguments or
environment, and Landlock stops a sandboxed process from reading another
process's memory. The zygote itself holds no secret (not the token either):
the relay's process and the Ray workers do.
"""

from __future__ import annotations

import hmac
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time

from .zygote import MAX_FDS, MAX_MESSAGE, Zygote, _peer_uid

__all__ = ["HELLO_SECONDS", "MAX_CONNECTIONS", "Relay"]

HELLO_SECONDS = 10.0                # to send the token, once connected
MAX_CONNECTIONS = 64                # at once: a few grading processes per node
_JOIN_SECONDS = 5.0


class Relay:
    """A zygote for children with environment ``env``, started now, and the
    socket that serves it at :attr:`path` to whoever sends ``token``.

    ``startup_seconds``: how long the zygote may take to import TensorFlow,
    from now. :meth:`close` stops the zygote, every connection and the
    socket, and removes its directory.
    """

    def __init__(self, env: dict[str, str], token: str, startup_seconds: float) -> None:
        if not token:
            raise ValueError("a relay needs a token")
        self._token = token.encode()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._home = tempfile.mkdtemp(prefix="grader-relay-")
        self.path = os.path.join(self._home, "zygote")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            os.chmod(self._home, 0o700)
            self._listener.bind(self.path)
            self._listener.listen(MAX_CONNECTIONS)
            self._zygote = Zygote(env)
        except OSError:
            self._listener.close()
            shutil.rmtree(self._home, ignore_errors=True)
            raise
        self._started = threading.Event()
        self._spawn(self._wait_for_zygote, startup_seconds)
        self._spawn(self._accept)

    @property
    def zygote_pid(self) -> int | None:
        return self._zygote.pid

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name="grader-zygote-relay",
                                  daemon=True)
        thread.start()
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _wait_for_zygote(self, startup_seconds: float) -> None:
        try:
            self._zygote.ready(startup_seconds)
        finally:
            self._started.set()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.1)     # out of descriptors, say: try again
                continue
            with self._lock:
                admitted = not self._closed and len(self._connections) < MAX_CONNECTIONS
                if admitted:
                    self._connections.add(conn)
            if not admitted:
                conn.close()
                continue
            try:
                self._spawn(self._serve, conn)
            except RuntimeError:        # no thread to be had: this one is refused
                self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        """One client: the token, the zygote's answer, then its jobs."""
        fds: list[int] = []
        try:
            if _peer_uid(conn) != os.getuid():
                return
            conn.settimeout(HELLO_SECONDS)
            hello = conn.recv(len(self._token) + 1)    # descriptors sent with it are dropped
            if not hmac.compare_digest(hello, self._token):
                return
            conn.settimeout(None)
            self._started.wait()
            if not self._zygote.ready(0):
                conn.send(f"failed {self._zygote.reason}"[:2000].encode())
                return
            conn.send(f"ready {self._zygote.pid}".encode())
            while True:
                message, fds, flags, _ = socket.recv_fds(conn, MAX_MESSAGE, MAX_FDS)
                if not message or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    return
                config = json.loads(message)
                if not isinstance(config, dict):
                    return
                try:
                    self._zygote.request(config, fds)
                except OSError as exc:          # gone: every client will start fresh
                    self._zygote.broken(f"it took no job: {exc.strerror or exc}")
                    return
                _close_all(fds)
                fds = []
        except (OSError, ValueError):
            return
        finally:
            _close_all(fds)
            self._drop(conn)

    def close(self) -> None:
        """Stop serving, stop the zygote, remove the socket's directory."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections = list(self._connections)
            threads = [t for t in self._threads if t is not threading.current_thread()]
        _shut(self._listener)
        for conn in connections:
            _shut(conn)
        if not self._started.is_set() and self._zygote.pid is not None:
            # still importing: end it, so that the wait for it ends now (it is
            # our child, not yet reaped: the pid is still its own)
            try:
                os.kill(self._zygote.pid, signal.SIGKILL)
            except OSError:
                pass
        self._started.wait(_JOIN_SECONDS)
        self._zygote.close()
        # The accept thread may have admitted a connection just before we closed, and
        # start its thread after the list above was taken: join until none is left
        # (once the accept thread has ended, no thread starts any more).
        deadline = time.monotonic() + _JOIN_SECONDS
        while threads and time.monotonic() < deadline:
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            with self._lock:
                threads = [t for t in self._threads
                           if t.is_alive() and t is not threading.current_thread()]
        self._listener.close()
        shutil.rmtree(self._home, ignore_errors=True)


def _shut(sock: socket.socket) -> None:
    """Wake whatever thread waits on ``sock`` (closing it alone would not)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
