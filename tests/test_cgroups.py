"""Per-sandbox resources: a cgroup per sandbox (grader/sandbox/cgroups.py),
neighbours that cannot be starved, and nothing left running whatever ends
the grader.

cgroup v2's code runs here against a fake hierarchy in a temporary directory
(:class:`FakeCgroup2`, which acts as the kernel does for what the grader
uses: interface files, moving processes, enabling controllers, killing and
removing), since the machines this runs on may mount only v1; the tests
that start sandboxes use whatever the kernel gives (v1 or v2) and skip,
saying why, where it gives none. Those are marked ``tf``: they spend seconds
of CPU.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from conftest import at_import

from grader import sandbox
from grader.child import _ChildRun, _death
from grader.outcome import ChildEnd
from grader.sandbox import Limits, cgroups as cg, remove
from grader.sandbox.remove import remove_cgroup

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "sandbox_scripts"
IS_ROOT = os.geteuid() == 0
MIB = 1 << 20


# ------------------------------------------------------- a fake cgroup v2


class FakeCgroup2:
    """A directory tree that acts as a cgroup v2 hierarchy for what the
    grader does with one: ``mkdir`` makes the interface files, a write to
    ``cgroup.procs`` moves the process (``0``: the writer), a cgroup that
    holds processes cannot enable controllers (EBUSY), ``cgroup.kill``
    kills what it holds, and ``rmdir`` fails (EBUSY) while a process it
    lists still runs."""

    def __init__(self, root: Path, own: str, controllers: str = "cpu io memory pids") -> None:
        self.root = root
        self.controllers = controllers
        root.mkdir()
        self._populate(root, controllers)
        self.own = root / own.strip("/")
        (root / "cgroup.subtree_control").write_text(controllers)
        for directory in reversed(self.own.relative_to(root).parents):
            if directory != Path("."):  # each ancestor enables them all for its children
                self.mkdir(str(root / directory))
                (root / directory / "cgroup.subtree_control").write_text(controllers)
        self.mkdir(str(self.own))
        self.mountinfo = f"36 25 0:30 / {root} rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate\n"
        self.self_cgroup = f"0::/{own.strip('/')}\n"

    @staticmethod
    def _populate(directory: Path, offered: str) -> None:
        files = {"cgroup.procs": "", "cgroup.controllers": offered, "cgroup.subtree_control": "",
                 "cgroup.kill": "", "memory.max": "max", "memory.swap.max": "max",
                 "memory.oom.group": "0", "pids.max": "max",
                 "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"}
        for name, text in files.items():
            (directory / name).write_text(text)

    def _ours(self, path: str) -> bool:
        return Path(path).is_relative_to(self.root)

    def mkdir(self, path: str, mode: int = 0o777, **options: object) -> None:
        if options or not self._ours(path):
            return self._real_mkdir(path, mode, **options)
        self._real_mkdir(path, mode)
        parent = Path(path).parent
        offered = (parent / "cgroup.subtree_control").read_text() if parent != self.root.parent else ""
        self._populate(Path(path), offered if Path(path) != self.root else self.controllers)

    def rmdir(self, path: str, **options: object) -> None:
        if options or not self._ours(path):
            return self._real_rmdir(path, **options)
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        live = [pid for pid in self.procs(directory) if _running(pid)]
        if live or any(entry.is_dir() for entry in directory.iterdir()):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for entry in directory.iterdir():
            entry.unlink()
        self._real_rmdir(path)

    def write(self, path: str, value: str) -> None:
        target, name = Path(path).parent, Path(path).name
        if name == "cgroup.procs":
            pid = os.getpid() if value.strip() == "0" else int(value)
            for procs in self.root.rglob("cgroup.procs"):
                listed = [p for p in procs.read_text().split() if int(p) != pid]
                procs.write_text("".join(f"{p}\n" for p in listed))
            with open(path, "a") as file:
                file.write(f"{pid}\n")
        elif name == "cgroup.subtree_control":
            wanted = {word.lstrip("+") for word in value.split()}
            if not wanted <= set((target / "cgroup.controllers").read_text().split()):
                raise OSError(errno.ENOENT, "No such file or directory", path)
            if target != self.root and self.procs(target):
                raise OSError(errno.EBUSY, "Device or resource busy", path)
            Path(path).write_text(" ".join(sorted(wanted)))
        elif name == "cgroup.kill":
            for procs in target.rglob("cgroup.procs"):
                for pid in self.procs(procs.parent):
                    os.kill(pid, signal.SIGKILL)
        else:
            Path(path).write_text(value)

    @staticmethod
    def procs(directory: Path) -> list[int]:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]

    _real_mkdir = staticmethod(os.mkdir)
    _real_rmdir = staticmethod(os.rmdir)


@pytest.fixture
def fake_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroup2:
    fake = FakeCgroup2(tmp_path / "cgroup", "user.slice/grader.scope")
    monkeypatch.setattr(os, "mkdir", fake.mkdir)
    monkeypatch.setattr(os, "rmdir", fake.rmdir)
    monkeypatch.setattr(cg, "_write_control", fake.write)
    monkeypatch.setattr(remove, "_write_control", fake.write)
    return fake


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


def test_v2_enables_the_controllers_in_the_graders_own_cgroup_once_it_has_left_it(fake_v2):
    """The grader and its children (the zygote, started first) move into a leaf."""
    zygote = subprocess.Popen(["sleep", "60"])
    try:
        for pid in (os.getpid(), zygote.pid):
            fake_v2.write(str(fake_v2.own / "cgroup.procs"), str(pid))
        found = cg.detect(fake_v2.mountinfo, fake_v2.self_cgroup)
    finally:
        zygote.kill()
        zygote.wait()
    assert (found.version, found.parents) == (2, {"": str(fake_v2.own)})
    assert found.description == "cgroup v2 (memory, pids)"
    assert (fake_v2.own / "cgroup.subtree_control").read_text() == "memory pids"
    leaf = fake_v2.own / f"grader-{os.getpid()}"
    assert fake_v2.procs(leaf) == [os.getpid(), zygote.pid] and fake_v2.procs(fake_v2.own) == []


def test_v2_gives_up_and_says_why_when_other_processes_share_the_graders_cgroup(fake_v2):
    fake_v2.write(str(fake_v2.own / "cgroup.procs"), "1")  # a shell, say
    fake_v2.write(str(fake_v2.own / "cgroup.procs"), str(os.getpid()))
    found = cg.detect(fake_v2.mountinfo, fake_v2.self_cgroup)
    assert found.version == 0 and found.parents == {}
    assert "1 other process(es) share the grader's cgroup" in found.reason
    assert found.description.startswith("no cgroup: cgroup v2 at ")
    assert sorted(fake_v2.procs(fake_v2.own)) == sorted([1, os.getpid()])  # put back
    assert [p.name for p in fake_v2.own.iterdir() if p.is_dir()] == []


def test_v2_without_the_controllers_delegated_says_so(tmp_path, monkeypatch):
    fake = FakeCgroup2(tmp_path / "cgroup", "user.slice/grader.scope", controllers="cpu io")
    monkeypatch.setattr(os, "mkdir", fake.mkdir)
    found = cg.detect(fake.mountinfo, fake.self_cgroup)
    assert found.version == 0
    assert found.reason.endswith("the memory and pids controller is not delegated here")


def test_v2_box_sets_the_limits_reports_an_oom_kill_and_is_killed_and_removed(fake_v2):
    found = cg.Cgroups(2, {"": str(fake_v2.own)}, "")
    fake_v2.mkdir(str(fake_v2.own / "sandbox-61000"))  # a stale one, from a grader that was killed
    box = cg.Box(found, "sandbox-61000", 2048, 100)
    path = fake_v2.own / "sandbox-61000"
    assert (path / "memory.max").read_text() == str(2048 * MIB)
    assert (path / "memory.swap.max").read_text() == "0"
    assert (path / "memory.oom.group").read_text() == "1"
    assert (path / "pids.max").read_text() == "100"
    assert box.procs_files == [str(path / "cgroup.procs")]
    assert not box.out_of_memory()
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 1\n")
    assert box.out_of_memory()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        fake_v2.write(box.procs_files[0], str(sleeper.pid))
        assert box.tasks() == {sleeper.pid}
        remove_cgroup(box)
        assert sleeper.wait(10) == -signal.SIGKILL
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not path.exists()
    remove_cgroup(box)  # missing already: fine


def test_v1_is_found_per_controller_under_the_graders_own_cgroups(tmp_path):
    memory, pids = tmp_path / "memory", tmp_path / "pids"
    (memory / "batch" / "grader").mkdir(parents=True)
    pids.mkdir()
    mountinfo = (f"35 31 0:32 / {memory} rw,relatime - cgroup cgroup rw,memory\n"
                 f"39 31 0:36 / {pids} rw,relatime - cgroup cgroup rw,pids\n"
                 f"41 31 0:38 / {tmp_path / 'unified'} rw,relatime - cgroup2 cgroup2 rw\n"
                 f"42 31 0:32 /batch {tmp_path / 'bound'} rw,relatime - cgroup cgroup rw,memory\n")
    self_cgroup = "8:pids:/\n4:memory:/batch/grader\n2:cpu,cpuacct:/\n0::/\n"
    found = cg.detect(mountinfo, self_cgroup)
    assert found == cg.Cgroups(1, {"memory": str(memory / "batch" / "grader"), "pids": str(pids)}, "")
    none = cg.detect("", "0::/\n")
    assert none.version == 0 and "no cgroup v2 hierarchy" in none.reason


def test_an_out_of_memory_end_is_reported_with_the_sandboxs_limit():
    child = _ChildRun({}, "Q5", ChildEnd.OUT_OF_MEMORY, memory_mib=4096)
    assert _death(child, "in compute_cost") == (
        "crashed", "out of memory (the sandbox's limit is 4096 MiB) in compute_cost")


# ------------------------------------------- sandboxes under the real kernel


def _cgroups_or_skip() -> cg.Cgroups:
    found = cg.cgroups()
    if not found.version:
        pytest.skip(f"no cgroup for sandboxes here: {found.reason}")
    return found


@pytest.fixture(params=["full", "basic"])
def isolation(request: pytest.FixtureRequest) -> str:
    _cgroups_or_skip()
    if request.param == "full":
        level, reason = sandbox.detect_isolation("auto")
        if level != "full":
            pytest.skip(f"full isolation unavailable: {reason}")
    return request.param


def _start(isolation: str, workdir: Path, source: str, limits: Limits) -> tuple[sandbox.SandboxedProcess, int]:
    """``source`` in a sandbox, with ``tell(text)`` writing a line on a pipe; (process, read end)."""
    workdir.mkdir()
    read_fd, write_fd = os.pipe()
    prelude = f"import os as _os\ndef tell(text):\n    _os.write({write_fd}, (str(text) + '\\n').encode())\n"
    (workdir / "main.py").write_text(prelude + textwrap.dedent(source))
    try:
        proc = sandbox.start([sys.executable, "main.py"], workdir, limits, {"LC_ALL": "C.UTF-8"}, isolation,
                             pass_fds=(write_fd,))
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return proc, read_fd


def _box_dirs(proc: sandbox.SandboxedProcess) -> list[str]:
    box = proc._uid_lease.box if proc.isolation == "full" else proc._box  # type: ignore[union-attr]
    return list(box.dirs.values())


# Each of six processes takes 200 MiB and says so; the sandbox may hold 512 MiB.
_HOGS = """
    import os, time
    for _ in range(6):
        if os.fork() == 0:
            block = bytearray(200 << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            tell("held")
            time.sleep(60)
            os._exit(0)
    time.sleep(60)
"""


@pytest.mark.tf
def test_one_sandbox_never_holds_more_than_memory_mib_and_its_neighbour_is_unaffected(isolation, tmp_path):
    """RLIMIT_AS (1 GiB here) allows each process its 200 MiB; the cgroup
    holds the six together to 512 MiB: at most two get theirs, the kernel
    kills in the sandbox, and the result says out of memory. An honest
    sandbox beside it, and the grader, allocate what they need."""
    limits = Limits(memory_mib=512, address_space_mib=1024)
    hog, hog_fd = _start(isolation, tmp_path / "hog", _HOGS, limits)
    honest, honest_fd = _start(isolation, tmp_path / "honest", """
        block = bytearray(300 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        tell("held")
    """, limits)
    dirs = _box_dirs(hog)
    try:
        assert honest.wait(60) == 0, honest.result()
        with os.fdopen(honest_fd, "rb") as channel:
            assert channel.read() == b"held\n"
        assert not honest.result().out_of_memory
        deadline = time.monotonic() + 60
        while hog.poll() is None and time.monotonic() < deadline:
            if any(_oom(d) for d in dirs):
                break
            time.sleep(0.1)
        room = bytearray(300 << 20)  # the grader allocates beyond the sandbox's limit
        assert len(room) == 300 << 20
    finally:
        hog.kill()
    with os.fdopen(hog_fd, "rb") as channel:
        held = channel.read().count(b"held")
    assert hog.result().out_of_memory
    assert held <= 2
    assert not any(os.path.exists(d) for d in dirs)  # the cgroup is gone


def _oom(directory: str) -> bool:
    for name in ("memory.events", "memory.oom_control"):
        try:
            text = Path(directory, name).read_text()
        except OSError:
            continue
        return any(line.split() == ["oom_kill", value] and value != "0"
                   for line in text.splitlines() for value in line.split()[1:2])
    return False


@pytest.mark.tf
def test_the_sandbox_and_all_its_processes_are_in_its_cgroup_with_its_limits(isolation, tmp_path):
    proc, read_fd = _start(isolation, tmp_path / "work", """
        import os, threading, time
        if os.fork() == 0:
            time.sleep(60)
        tell(os.getpid())
        time.sleep(60)
    """, Limits(memory_mib=1500, processes=40))
    dirs = _box_dirs(proc)
    try:
        with os.fdopen(read_fd, "rb") as channel:
            assert channel.readline().strip()
        found = cg.cgroups()
        box = proc._uid_lease.box if proc.isolation == "full" else proc._box  # type: ignore[union-attr]
        if found.version == 2:
            assert Path(dirs[0], "memory.max").read_text().strip() == str(1500 * MIB)
            assert Path(dirs[0], "memory.swap.max").read_text().strip() == "0"
            assert Path(dirs[0], "pids.max").read_text().strip() == "40"
        else:
            memory, pids = box.dirs["memory"], box.dirs["pids"]
            assert Path(memory, "memory.limit_in_bytes").read_text().strip() == str(1500 * MIB)
            assert Path(pids, "pids.max").read_text().strip() == "40"
        tasks = box.tasks()
        assert len(tasks) >= 3  # the monitor, the command, its child (and full mode's init)
        group = proc._group if proc.isolation == "basic" else proc._init_pid
        assert group in tasks
        assert proc.resources.startswith(found.description)
    finally:
        proc.kill()
    assert not any(os.path.exists(d) for d in dirs)
    assert not [pid for pid in tasks if _running(pid)]


@pytest.mark.tf
def test_pids_max_holds_in_basic_mode_even_for_root(tmp_path):
    """Root ignores RLIMIT_NPROC; the cgroup's pids.max holds all the same."""
    _cgroups_or_skip()
    proc, read_fd = _start("basic", tmp_path / "work", """
        import os, time
        children, outcome = 0, "no limit hit"
        try:
            for _ in range(300):
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
        except OSError as exc:
            outcome = type(exc).__name__
        tell(f"{children} {outcome}")
        time.sleep(60)
    """, Limits(processes=32))
    try:
        with os.fdopen(read_fd, "rb") as channel:
            children, outcome = channel.readline().decode().split()
    finally:
        proc.kill()
    assert int(children) < 32 and outcome == "BlockingIOError"


# --------------------------------------- basic mode's neighbours, unprivileged


def _unprivileged_python() -> str:
    """A Python that another uid can run (the tests' own may live in /root)."""
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if not candidate:
            continue
        probe = subprocess.run(["setpriv", "--reuid=61999", "--regid=61999", "--clear-groups", candidate,
                                "-I", "-c", "import os, sys; assert sys.version_info >= (3, 9) "
                                "and os.access(sys.executable, os.X_OK)"],
                               capture_output=True)  # fmt: skip
        if probe.returncode == 0:
            return candidate
    pytest.skip("no Python that an unprivileged uid may run")


@pytest.mark.tf
@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_a_thread_grabbing_neighbour_cannot_starve_basic_mode(attempt):
    """As an unprivileged user (setpriv, not a chroot: a chrooted process may
    make no user namespace), a basic sandbox grabs threads in bursts beside
    an honest one that starts a pool of 12 again and again: with the tasks
    of each counted in a user namespace of its own, the honest one never
    fails to (before, it failed nearly every time); a command forked as the
    zygote forks one gets the same count and no capability. Repeated: timing decides
    who wins a race, so the answer must not depend on it."""
    if not IS_ROOT or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another uid")
    uid = 61999
    try:
        pwd.getpwuid(uid)
        pytest.skip(f"uid {uid} belongs to a user here")
    except KeyError:
        pass
    python = _unprivileged_python()
    home = Path(tempfile.mkdtemp(prefix="neighbours-", dir="/tmp"))
    try:
        (home / "grader").mkdir()
        shutil.copytree(REPO / "grader" / "sandbox", home / "grader" / "sandbox",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(SCRIPTS / "neighbours_as_user.py", home / "driver.py")
        from test_sandbox import _FORK_SERVER

        (home / "server.py").write_text(_FORK_SERVER)
        for path in [home, *home.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)
        run = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", python, "-B",
                              "driver.py"], cwd=home, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
                             capture_output=True, text=True, timeout=180)  # fmt: skip
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
    finally:
        sandbox.remove_tree(home)
    if "tasks counted in a user namespace of its own" not in report["resources"]:
        pytest.skip(f"no user namespace for a sandbox here: {report['resources']}")
    assert report["uid"] == uid
    assert report["honest"]["returncode"] == 0
    assert report["honest"]["rounds"] >= 10
    assert report["honest"]["failures"] == 0
    assert report["left"] == []
    # Forked as the zygote forks: its own count, and no capability from its user namespace.
    assert report["forked"] == {"returncode": 0, "uid": uid, "nproc": 64, "cap_eff": 0, "cap_prm": 0,
                                "no_new_privs": "1"}


# ------------------------------------ nothing left running, whatever ends the grader

# A grader that starts one sandbox (exec'd, or forked by its own fork server)
# whose command loops under the name given, says so, and waits.
_GRADER = """
import json, socket, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from grader import sandbox
workdir, mode, how, name = Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
(workdir / "main.py").write_text(
    "import ctypes\\nctypes.CDLL(None).prctl(15, %r.encode(), 0, 0, 0)\\nwhile True:\\n    pass\\n" % name)
if how == "forked":
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    subprocess.Popen([sys.executable, "-c", sys.argv[6], str(theirs.fileno()), sys.argv[1]],
                     pass_fds=(theirs.fileno(),))
    request = lambda config, fds: socket.send_fds(ours, [json.dumps(config).encode()], fds)
    proc = sandbox.start_forked(request, workdir, sandbox.Limits(), {}, mode)
else:
    proc = sandbox.start([sys.executable, "main.py"], workdir, sandbox.Limits(), {}, mode)
print("started", flush=True)
time.sleep(120)
"""


def _named(name: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name and _running(int(pid)):
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.tf
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
@pytest.mark.parametrize("how", ["exec", "forked"])
@pytest.mark.parametrize("mode", ["basic", "full"])
def test_whatever_signal_ends_the_grader_nothing_of_the_sandbox_is_left_running(mode, how, signum, tmp_path):
    if mode == "full":
        level, reason = sandbox.detect_isolation("auto")
        if level != "full":
            pytest.skip(f"full isolation unavailable: {reason}")
    from test_sandbox import _FORK_SERVER

    name = f"loop{os.getpid() % 10000}.{int(signum)}{how[0]}"[:15]
    workdir = tmp_path / "work"
    workdir.mkdir()
    grader = subprocess.Popen([sys.executable, "-c", _GRADER, str(REPO), str(workdir), mode, how, name,
                               _FORK_SERVER], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert grader.stdout.readline() == "started\n"
        deadline = time.monotonic() + 30
        while not _named(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _named(name), "the looping command never ran"
        grader.send_signal(signum)
        assert grader.wait(30) != 0
    finally:
        grader.kill()
        grader.wait()
        grader.stdout.close()
    deadline = time.monotonic() + 15
    while _named(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _named(name)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            data = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        children.setdefault(int(data[data.rindex(b")") + 2 :].split()[1]), []).append(int(pid))
    found, pending = set(), [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


@pytest.mark.tf
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=lambda s: s.name)
@pytest.mark.parametrize("mode", ["basic", "full"])
def test_a_grader_ended_by_a_signal_while_grading_a_loop_leaves_nothing_running(mode, signum, tmp_path):
    """``python -m grader check`` grading a file that loops at import, ended
    by the terminal closing (SIGHUP) or ``kill`` (SIGTERM): nothing it
    started runs afterwards (the sandbox, its monitor, the zygote). SIGINT
    too, at the sandbox's level above."""
    if mode == "full":
        level, reason = sandbox.detect_isolation("auto")
        if level != "full":
            pytest.skip(f"full isolation unavailable: {reason}")
    name = f"graded{os.getpid() % 10000}.{int(signum)}{mode[0]}"[:15]
    submission = tmp_path / "tensorflow_tutorial.py"
    submission.write_text(at_import(f"import ctypes\nctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)\n"
                                    "while True:\n    pass\n"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    grader = subprocess.Popen([sys.executable, "-m", "grader", "check", str(submission), "--isolation", mode],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240  # TensorFlow's import on a loaded machine: a hang guard
        while not _named(name) and grader.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _named(name), "the submission never ran"
        started = _descendants(grader.pid)
        grader.send_signal(signum)
        grader.wait(60)
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and [pid for pid in started if _running(pid)]:
        time.sleep(0.1)
    left = [pid for pid in started if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [] and _named(name) == []


@pytest.mark.tf
def test_a_submission_spreading_memory_over_processes_is_reported_out_of_memory(tmp_path):
    """Full isolation, as the grader runs it: compute_cost starts three
    processes that take 700 MiB each (each well within its own address
    space limit) beside TensorFlow, in a sandbox of 1536 MiB. The whole
    sandbox ends (cgroup v2's memory.oom.group; on v1 the monitor, told by
    the kernel's OOM notification), and Q5 is a crash that says out of
    memory, with the limit."""
    level, reason = sandbox.detect_isolation("auto")
    if level != "full":
        pytest.skip(f"full isolation unavailable: {reason}")
    _cgroups_or_skip()
    import yaml

    data = yaml.safe_load((REPO / "rubric.yaml").read_text())
    data["limits"]["memory_mib"] = 1536
    data["questions"] = [item for item in data["questions"] if item["id"] == "Q5"]
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text(yaml.safe_dump(data, sort_keys=False))
    submission = tmp_path / "tensorflow_tutorial.py"
    submission.write_text((REPO / "reference" / "tensorflow_tutorial.py").read_text() + textwrap.dedent("""

        def compute_cost(Z2, Y):
            import subprocess, sys, time
            hog = ("block = bytearray(700 << 20)\\n"
                   "for i in range(0, len(block), 4096):\\n    block[i] = 1\\n"
                   "import time; time.sleep(60)\\n")
            for _ in range(3):
                subprocess.Popen([sys.executable, "-c", hog])
            time.sleep(60)
    """))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    run = subprocess.run([sys.executable, "-m", "grader", "check", str(submission), "--rubric", str(rubric),
                          "--format", "json", "--isolation", "full"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    report = json.loads(run.stdout)
    q5 = next(q for q in report["questions"] if q["id"] == "Q5")
    text = q5["feedback"] + " " + " ".join(c["message"] for c in q5["checks"])
    assert q5["score"] == 0
    assert "out of memory (the sandbox's limit is 1536 MiB) in compute_cost" in text, text
