"""The zygote relay (grader/zygote_relay.py): a grade forked from a relay's zygote is the
grade a zygote of one's own gives; the relay serves its own user with the token and no one
else; a relay whose zygote fails means children of one's own; closing it leaves nothing.

The relays run in this process, as batch --ray's keeper runs one in an actor of each node;
grades run here through ``engine.grade`` (this process never imports TensorFlow). The
zygote serves full isolation, which needs root.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import engine, zygote, zygote_relay
from grader.report import to_dict, to_text
from grader.zygote_relay import Relay
from test_zygote import REFERENCE, mutant, rubric_with, submission

pytestmark = pytest.mark.skipif(not (os.geteuid() == 0 and zygote.possible()),
                                reason="the zygote serves full isolation: it needs root on Linux")

TOKEN = "6f" * 32


@pytest.fixture(scope="module")
def rubric(tmp_path_factory):
    return rubric_with(tmp_path_factory.mktemp("rubric"))


@pytest.fixture(scope="module")
def relay(rubric):
    served = Relay(engine._zygote_env(rubric), TOKEN, 300)
    yield served
    served.close()


@pytest.fixture(autouse=True)
def no_zygote_of_this_process():
    zygote.shutdown()
    yield
    zygote.shutdown()


def connections_of(relay: Relay, count: int) -> None:
    """Wait until ``relay`` has ``count`` clients (it notices a client gone at once)."""
    deadline = time.monotonic() + 10
    while len(relay._connections) != count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(relay._connections) == count


def answer(path: str, first: bytes | None, fds: list[int] = ()) -> bytes:
    """What the relay says to a client whose first message is ``first`` (None: silence)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.connect(path)
        if first is not None:
            socket.send_fds(sock, [first], list(fds))
        sock.settimeout(30)
        return sock.recv(4096)


def alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


# ----------------------------------------------------------- the same grade

@pytest.mark.parametrize("isolation", ["auto", "basic"])
def test_a_grade_through_the_relay_is_the_grade_of_a_zygote_of_ones_own(
        relay, rubric, isolation, tmp_path):
    path = submission(tmp_path, mutant("cost_summed"))
    env = engine._zygote_env(rubric)
    own = engine.grade(path, rubric, isolation=isolation, startup="zygote")
    local = zygote.for_env(env)
    assert isinstance(local, zygote.Zygote) and local.pid != relay.zygote_pid
    zygote.shutdown()

    zygote.attach(env, relay.path, TOKEN)
    attached = zygote.for_env(env)
    assert isinstance(attached, zygote.RemoteZygote)
    through = engine.grade(path, rubric, isolation=isolation, startup="zygote")
    assert zygote.for_env(env) is attached and attached.alive
    assert attached.pid == relay.zygote_pid                # forked from the relay's zygote
    assert through.startup == own.startup == "zygote"
    assert through.isolation == ("full" if isolation == "auto" else "basic")
    assert json.dumps(to_dict(through)) == json.dumps(to_dict(own))   # byte for byte
    assert to_text(through) == to_text(own)
    assert 0 < through.total < through.max_total

    zygote.attach(env, relay.path, "another token")         # a working one stays
    assert zygote.for_env(env) is attached


# ------------------------------------------------------------ who is served

def test_the_relay_serves_only_a_client_that_sends_the_token_first(relay, monkeypatch):
    monkeypatch.setattr(zygote_relay, "HELLO_SECONDS", 1.0)
    connections_of(relay, 0)
    assert answer(relay.path, b"wrong") == b""
    assert answer(relay.path, TOKEN[:-1].encode()) == b""
    assert answer(relay.path, TOKEN.encode() + b"0") == b""
    started = time.monotonic()
    assert answer(relay.path, None) == b""                  # silence: closed after 1 s
    assert time.monotonic() - started < 25  # closed by the relay, not by this client giving up (30 s)
    # a job before the token: refused, and the relay keeps no copy of what it carried
    read_end, write_end = os.pipe()
    job = json.dumps({"mode": "basic", "pass_fds": []}).encode()
    assert answer(relay.path, job, [write_end]) == b""
    os.close(write_end)
    os.set_blocking(read_end, False)
    assert os.read(read_end, 1) == b""                      # end of file: no copy left
    os.close(read_end)

    remote = zygote.RemoteZygote(relay.path, TOKEN)         # and it goes on serving
    assert remote.ready(300) and remote.pid == relay.zygote_pid
    remote.close()


def test_another_user_is_refused_even_with_the_token(relay):
    """The directory (0700) stops another user; with the directory open and the socket
    writable by all, the peer's uid (SO_PEERCRED) still does, although it sends the token."""
    nobody = pwd.getpwnam("nobody")
    python = next((p for p in ("/usr/bin/python3", sys.executable)
                   if _runs_as(nobody, [p, "-c", "pass"])), None)
    if python is None:
        pytest.skip("no Python that user nobody may run")
    client = ("import socket, sys\n"
              "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
              "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n"
              "    print('refused', e.errno); sys.exit()\n"
              "try:\n    s.send(sys.stdin.read().encode()); s.settimeout(30)\n"
              "    print('answer', repr(s.recv(100)))\n"
              "except OSError as e:\n    print('closed', e.errno)\n")

    def as_nobody() -> str:
        return subprocess.run([python, "-I", "-c", client, relay.path], input=TOKEN,
                              user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[],
                              capture_output=True, text=True, timeout=60).stdout.strip()

    assert as_nobody() == "refused 13"                      # EACCES
    home = os.path.dirname(relay.path)
    os.chmod(home, 0o711)
    os.chmod(relay.path, 0o777)
    try:
        assert as_nobody() in ("answer b''", "closed 32", "closed 104")   # EPIPE, ECONNRESET
    finally:
        os.chmod(relay.path, 0o755)
        os.chmod(home, 0o700)
    remote = zygote.RemoteZygote(relay.path, TOKEN)         # and it goes on serving
    assert remote.ready(300)
    remote.close()


def _runs_as(user, argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                              capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


def test_the_relay_serves_a_bounded_number_of_clients_at_once(relay, monkeypatch):
    monkeypatch.setattr(zygote_relay, "MAX_CONNECTIONS", 2)
    connections_of(relay, 0)
    first, second = (zygote.RemoteZygote(relay.path, TOKEN) for _ in range(2))
    assert first.ready(300) and second.ready(300)
    third = zygote.RemoteZygote(relay.path, TOKEN)
    assert not third.ready(30) and not third.alive          # refused, however it hears it
    first.close()
    connections_of(relay, 1)
    fourth = zygote.RemoteZygote(relay.path, TOKEN)
    assert fourth.ready(30)
    for remote in (second, fourth):
        remote.close()


# ---------------------------------------------------------------- fallback

def test_a_relay_whose_zygote_refused_means_children_of_ones_own(rubric, tmp_path, monkeypatch):
    fake = tmp_path / "zygote_server.py"
    fake.write_text("import os, socket\n"
                    "s = socket.socket(fileno=int(os.environ['GRADER_ZYGOTE_FD']))\n"
                    "s.send(b'unsafe TensorFlow started 3 thread(s) at import')\n")
    env = engine._zygote_env(rubric)
    with monkeypatch.context() as patch:
        patch.setattr(zygote, "SERVER", fake)
        refusing = Relay(env, TOKEN, 60)
    try:
        zygote.attach(env, refusing.path, TOKEN)
        attached = zygote.for_env(env)
        report = engine.grade(submission(tmp_path, REFERENCE), rubric, startup="auto")
    finally:
        refusing.close()
    assert report.startup == "fresh" and report.total == report.max_total
    assert not attached.alive and "thread(s) at import" in attached.reason
    assert isinstance(zygote.for_env(env), zygote.Zygote)   # the next grade: one of its own


def test_a_relay_whose_zygote_died_means_a_fresh_child_and_closing_leaves_nothing(
        rubric, tmp_path):
    env = engine._zygote_env(rubric)
    dying = Relay(env, TOKEN, 300)
    home = os.path.dirname(dying.path)
    zygote.attach(env, dying.path, TOKEN)
    attached = zygote.for_env(env)
    assert attached.ready(300)
    pid = dying.zygote_pid
    zygote_home = os.readlink(f"/proc/{pid}/cwd")
    os.kill(pid, 9)
    time.sleep(0.5)
    report = engine.grade(submission(tmp_path, REFERENCE), rubric, startup="zygote")
    assert report.startup == "fresh" and report.total == report.max_total
    assert not attached.alive and "did not fork" in attached.reason
    assert "took no job" in dying._zygote.reason

    dying.close()
    assert not os.path.exists(home) and not os.path.exists(zygote_home)
    assert not alive(pid)
    assert not any(t.is_alive() for t in dying._threads)
    assert not zygote.RemoteZygote(dying.path, TOKEN).alive   # nothing listens there


def test_closing_a_relay_leaves_no_process_and_no_directory(rubric):
    env = engine._zygote_env(rubric)
    for wait in (True, False):          # a zygote that is ready, and one still importing
        served = Relay(env, TOKEN, 300)
        home, pid = os.path.dirname(served.path), served.zygote_pid
        zygote_home = os.readlink(f"/proc/{pid}/cwd")
        remote = zygote.RemoteZygote(served.path, TOKEN)
        if wait:
            assert remote.ready(300)
        started = time.monotonic()
        served.close()
        assert time.monotonic() - started < 25  # its waits are bounded (5 s each): no hang
        assert not os.path.exists(home) and not os.path.exists(zygote_home)
        assert not alive(pid)
        assert not any(t.is_alive() for t in served._threads)
        if wait:                                            # its client hears it go
            with pytest.raises(OSError):
                remote.request({"job": 1}, [])
        else:
            assert not remote.ready(10) and "hung up" in remote.reason
        remote.close()
        served.close()                                      # twice is harmless


def test_a_client_admitted_as_the_relay_closes_leaves_no_thread():
    """Clients that connect while close() runs: the thread the accept loop starts for
    one it admitted just before is joined too (it was missed 5 times in 30 before)."""
    import threading

    missed = 0
    for attempt in range(30):
        served = Relay({"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, TOKEN, 300)
        clients = [threading.Thread(target=zygote.RemoteZygote, args=(served.path, TOKEN))
                   for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(0.002 * (attempt % 5))     # close at different points of their arrival
        served.close()
        missed += any(t.is_alive() for t in served._threads)
        for client in clients:
            client.join()
    assert missed == 0
