"""grader/batch/ray.py: ``batch --ray`` on a Ray cluster simulated on this machine.

Ray listens on the machine's own interface address unless it runs in a
network namespace of its own, so every Ray process here does: the cluster
(``tests/ray_cluster.py``: a head without CPUs and two worker nodes of one
CPU each) under ``unshare --net``, the batches that join it under ``nsenter``
into the same namespace, and a batch that starts its own Ray instance under
``unshare --net`` too. That needs root (as CI runs) and Ray installed (as
``make test`` does); otherwise the tests are skipped, saying why.

Select them with ``pytest -m ray``.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from conftest import at_import

from grader import zygote

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"
STARTER = ROOT / "starter" / "tensorflow_tutorial.py"
HELPER = ROOT / "tests" / "ray_cluster.py"
COST_MEAN = "return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=Z2))"
ARGMAX = "tf.argmax(Z2, axis=1)"
# Tries the Ray control plane (the head's port), the object store's socket and
# Ray's token, looks for another student's mark in its process, then raises
# what it found: the import error says.
HOSTILE = """import builtins, glob, os, socket
tried = ["process: SHARED" if hasattr(builtins, "graded_here") else "process: fresh"]
builtins.graded_here = True
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    tried.append("control plane: REACHED")
except OSError as exc:
    tried.append("control plane: blocked, " + type(exc).__name__)
for pattern in ("/tmp/ray/session_*/sockets/*", "/tmp/ray/session_latest/sockets/plasma_store"):
    found = glob.glob(pattern)
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(found[0] if found else pattern)
        tried.append("object store: REACHED")
    except OSError as exc:
        tried.append("object store: blocked, " + type(exc).__name__)
for path in ("~/.ray/auth_token", "/root/.ray/auth_token"):
    try:
        open(os.path.expanduser(path)).read()
        tried.append("token: REACHED")
    except OSError as exc:
        tried.append("token: blocked, " + type(exc).__name__)
raise RuntimeError("; ".join(tried))
"""

pytestmark = [pytest.mark.ray]
WARM = zygote.requested_mode() != "fresh" and zygote.possible()   # children fork from zygotes


def _why_not() -> str:
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (make test installs requirements-ray.txt)"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux: Ray runs in a network namespace of its own here"
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return "needs unshare and nsenter (util-linux)"
    return ""


needs_ray = pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "-")


# ---------------------------------------------------------------- helpers

_RUBRIC: list[Path] = []


def rubric() -> Path:
    """rubric.yaml with a generous startup budget: three Ray nodes and a batch import TensorFlow
    at once beside other tests, and no verdict may depend on the machine's load."""
    if not _RUBRIC:
        import tempfile
        import yaml
        data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
        data["limits"]["startup_seconds"] = 600
        path = Path(tempfile.mkdtemp(prefix="ray-rubric-")) / "rubric.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        _RUBRIC.append(path)
    return _RUBRIC[0]


def grader(*args, prefix: tuple = (), timeout: float = 600) -> subprocess.CompletedProcess:
    if args and args[0] == "batch":
        args = (*args, "--rubric", rubric())
    return subprocess.run([*prefix, sys.executable, "-m", "grader", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def private_network() -> tuple:
    """A command prefix: a fresh network namespace with its loopback up."""
    return ("unshare", "--net", sys.executable, "-c",
            "import os, sys; sys.path.insert(0, 'tests'); import ray_cluster; "
            "ray_cluster.loopback_up(); os.execvp(sys.argv[1], sys.argv[1:])")


class RayCluster:
    def __init__(self, tmp: Path):
        address_file = tmp / "address"
        self.proc = subprocess.Popen(["unshare", "--net", sys.executable, str(HELPER),
                                      str(address_file)], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 180
        while not address_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the Ray cluster did not start: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.2)
        self.address = address_file.read_text()
        self.port = int(self.address.rsplit(":", 1)[1])
        self.enter = ("nsenter", f"--net=/proc/{self.proc.pid}/ns/net", "--")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if _why_not():
        pytest.skip(_why_not())
    ray_cluster = RayCluster(tmp_path_factory.mktemp("ray"))
    yield ray_cluster
    ray_cluster.stop()


def gradebook(out: Path) -> dict[str, dict]:
    rows = list(csv.DictReader(io.StringIO((out / "gradebook.csv").read_text())))
    return {r["student"]: r for r in rows}


def state(out: Path) -> dict:
    return json.loads((out / "state.json").read_text())["students"]


def progress_lines(stderr: str) -> list[str]:
    """The student of each ``[k/n] student: ...`` line, in order."""
    return re.findall(r"^\[\d+/\d+\] (\S+): ", stderr, re.M)


def make_class(src: Path, port: int) -> None:
    src.mkdir()
    reference = REFERENCE.read_text()
    assert reference.count(COST_MEAN) == 1 and reference.count(ARGMAX) == 1
    (src / "alice.py").write_text(reference)
    shutil.copyfile(STARTER, src / "bob.py")
    (src / "carl.py").write_text(reference.replace(COST_MEAN, COST_MEAN.replace("mean", "sum")))
    (src / "dora.py").write_text(reference.replace(ARGMAX, "tf.argmax(Z2, axis=0)"))
    nb = nbformat.v4.new_notebook()
    head, *functions = reference.split("\ndef ")
    nb.cells = [nbformat.v4.new_code_cell("!pip install tensorflow\n" + head)]
    nb.cells += [nbformat.v4.new_code_cell("def " + f) for f in functions]
    nbformat.write(nb, str(src / "erin.ipynb"))
    (src / "mallory.py").write_text(at_import(HOSTILE.format(port=port)))
    (src / "oscar.py").write_text(at_import(HOSTILE.format(port=port)))


def killer(stop_at: dict[str, int]):
    """Kill the Ray worker grading each named student, that many times; returns the kills."""
    killed: dict[str, list[int]] = {name: [] for name in stop_at}

    def sweep() -> None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            name = title.removeprefix("ray::grade ").strip()
            if title.startswith("ray::grade ") and name in killed \
                    and len(killed[name]) < stop_at[name] and int(pid) not in killed[name]:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    killed[name].append(int(pid))
                except ProcessLookupError:
                    pass
    return sweep, killed


def _cmdline(pid) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def watching_zygotes(prefix: tuple, *args, network: str = "") -> tuple[
        subprocess.CompletedProcess, dict]:
    """Run ``grader *args`` after ``prefix`` (which enters a network namespace: ``network``,
    or the batch's own); meanwhile note each zygote of that network (a zygote_server.py
    process whose parent is not one): {pid: its parent's pid and command line, its own
    folder and its relay's}."""
    args = (*args, "--rubric", rubric())
    batch = subprocess.Popen([*prefix, sys.executable, "-m", "grader", *map(str, args)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    zygotes: dict[int, dict] = {}
    output: list = []
    reader = threading.Thread(target=lambda: output.append(batch.communicate()))
    reader.start()
    while reader.is_alive():
        if not network:     # once the batch runs, it is in the namespace it made
            if _cmdline(batch.pid).split()[1:3] == ["-m", "grader"]:
                network = os.readlink(f"/proc/{batch.pid}/ns/net")
            time.sleep(0.01)
            continue
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            if pid in zygotes or "zygote_server.py" not in _cmdline(pid):
                continue
            try:
                if os.readlink(f"/proc/{pid}/ns/net") != network:
                    continue
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                home = os.readlink(f"/proc/{pid}/cwd")
                sockets = Path(f"/proc/{ppid}/net/unix").read_text()
            except (OSError, ValueError, IndexError):
                continue
            parent = _cmdline(ppid)
            if "zygote_server.py" in parent:
                continue            # a job forked from a zygote
            relays = {os.path.dirname(p) for p in re.findall(r"\S*/grader-relay-[^/\s]+/\S+",
                                                              sockets)}
            zygotes[pid] = {"ppid": ppid, "parent": parent, "folders": [home, *sorted(relays)]}
        time.sleep(0.1)
    reader.join()
    stdout, stderr = output[0]
    return subprocess.CompletedProcess(batch.args, batch.returncode, stdout, stderr), zygotes


# ---------------------------------------------------------------- the tests

@needs_ray
def test_a_class_on_a_three_node_cluster_scores_as_local_batch(cluster, tmp_path):
    src = tmp_path / "class"
    make_class(src, cluster.port)
    local, remote = tmp_path / "local", tmp_path / "ray"
    proc = grader("batch", src, "--out", local, "--jobs", 2)
    assert proc.returncode == 0, proc.stderr
    proc, zygotes = watching_zygotes(cluster.enter, "batch", src, "--out", remote, "--ray",
                                     cluster.address,
                                     network=os.readlink(f"/proc/{cluster.proc.pid}/ns/net"))
    assert proc.returncode == 0, proc.stderr
    assert "3 nodes, 2 CPUs" in proc.stderr
    # one zygote per worker node, kept by that node's keeper: none in a Ray worker or the
    # driver; and none left, nor its folders, once the batch has ended (none at all when
    # GRADER_STARTUP=fresh, as the suite runs to compare)
    assert len(zygotes) == (2 if WARM else 0), zygotes
    assert all(z["parent"].startswith("ray::_ZygoteKeeper") for z in zygotes.values()), zygotes
    assert len({z["ppid"] for z in zygotes.values()}) == len(zygotes), zygotes  # one keeper each
    for pid, z in zygotes.items():
        assert not os.path.exists(f"/proc/{pid}"), z
        assert any("grader-relay-" in f for f in z["folders"]), z
        assert not any(os.path.exists(f) for f in z["folders"]), z

    rows = gradebook(remote)
    assert rows == gradebook(local)            # row for row, every column
    assert {n: r["status"] for n, r in rows.items()} == {
        "alice": "graded", "bob": "graded", "carl": "graded", "dora": "graded",
        "erin": "graded", "mallory": "import-error", "oscar": "import-error"}
    assert float(rows["alice"]["total"]) == float(rows["erin"]["total"]) == 100
    assert float(rows["carl"]["Q5"]) < 10 and float(rows["bob"]["total"]) == 0
    assert float(rows["dora"]["total"]) < 100
    for name in rows:                          # the same feedback, to the character
        for suffix in (".json", ".txt"):
            report = f"reports/{name}{suffix}"
            assert (remote / report).read_text() == (local / report).read_text(), report
    assert (remote / "submissions" / "erin.py").read_text() == \
        (local / "submissions" / "erin.py").read_text()

    graded = state(remote)
    assert {s["isolation"] for s in graded.values()} == {"full"}
    assert len({s["node"] for s in graded.values()}) == 2     # both worker nodes, never the head
    assert sorted(progress_lines(proc.stderr)) == sorted(rows)

    # the hostile files reached neither the control plane nor the object store, and
    # each ran in a process of its own, although each worker node graded several files
    for name in ("mallory", "oscar"):
        reason = graded[name]["reason"]
        assert reason.count("blocked") == 5 and "REACHED" not in reason, reason
        assert "RuntimeError: process: fresh;" in reason, reason


@needs_ray
def test_a_worker_killed_mid_grade_is_retried_and_counted_once(cluster, tmp_path):
    src = tmp_path / "class"
    src.mkdir()
    for name in ("alice", "bob", "carl"):
        shutil.copyfile(STARTER, src / f"{name}.py")
    out = tmp_path / "out"
    sweep, killed = killer({"alice": 2, "bob": 1})   # --retries 1: alice runs out of attempts
    batch = subprocess.Popen([*cluster.enter, sys.executable, "-m", "grader", "batch", src,
                              "--out", out, "--ray", cluster.address, "--retries", "1",
                              "--rubric", rubric()],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while batch.poll() is None:
        sweep()
        time.sleep(0.05)
    stderr = batch.stderr.read()
    assert [len(killed["alice"]), len(killed["bob"])] == [2, 1], (killed, stderr)
    assert batch.returncode == 1, stderr      # done, one ungradable

    rows = gradebook(out)
    assert sorted(rows) == ["alice", "bob", "carl"]
    assert rows["alice"]["status"] == "ungradable" and rows["alice"]["total"] == ""
    assert rows["bob"]["status"] == rows["carl"]["status"] == "graded"
    reason = state(out)["alice"]["reason"]
    assert "the Ray worker grading it died on each of its 2 attempts" in reason, reason
    assert "problem on the grader's side" in (out / "reports" / "alice.txt").read_text()
    assert sorted(progress_lines(stderr)) == ["alice", "bob", "carl"]   # each once


@needs_ray
def test_an_interrupted_run_on_a_local_ray_instance_resumes(tmp_path):
    src = tmp_path / "class"
    src.mkdir()
    reference = REFERENCE.read_text()
    (src / "alice.py").write_text(reference)
    shutil.copyfile(STARTER, src / "bob.py")
    (src / "carl.py").write_text(reference.replace(COST_MEAN, COST_MEAN.replace("mean", "sum")))
    out = tmp_path / "out"
    argv = [*private_network(), sys.executable, "-m", "grader", "batch", str(src), "--out",
            str(out), "--ray", "--jobs", "1", "--rubric", str(rubric())]
    batch = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 300
    while batch.poll() is None and time.monotonic() < deadline:
        if (out / "state.json").exists() and any(
                s["status"] == "graded" for s in state(out).values()):
            break
        time.sleep(0.1)
    batch.send_signal(signal.SIGINT)   # unshare passes it on to the batch
    stderr = batch.communicate(timeout=120)[1]
    assert batch.returncode == 130, stderr
    first = state(out)
    done = sorted(n for n, s in first.items() if s["status"] == "graded")
    assert 1 <= len(done) < 3, stderr
    assert all(s["status"] == "pending" for n, s in first.items() if n not in done)

    proc, zygotes = watching_zygotes(private_network(), "batch", src, "--out", out, "--ray",
                                     "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    # a local instance's only node is this machine: its one zygote is the driver's own
    assert [z["parent"].split()[1:4] for z in zygotes.values()] == \
        [["-m", "grader", "batch"]] * WARM, zygotes
    assert not any(os.path.exists(f) for z in zygotes.values() for f in z["folders"]), zygotes
    assert f"{3 - len(done)} to grade, {len(done)} unchanged" in proc.stderr, proc.stderr
    assert sorted(progress_lines(proc.stderr)) == sorted(set(first) - set(done))
    final = state(out)
    assert all(final[n]["graded_at"] == first[n]["graded_at"] for n in done)
    assert {n: r["status"] for n, r in gradebook(out).items()} == dict.fromkeys(first, "graded")
    assert float(gradebook(out)["alice"]["total"]) == 100


def one_student(tmp_path: Path) -> Path:
    src = tmp_path / "class"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    return src


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_a_bad_address_is_one_line_not_a_traceback(tmp_path):
    src = one_student(tmp_path)
    proc = grader("batch", src, "--out", tmp_path / "out", "--ray", "not an address")
    assert proc.returncode == 2 and "expected auto, host:port or ray://host:port" in proc.stderr
    proc = grader("batch", src, "--out", tmp_path / "out", "--ray", "127.0.0.1:1")
    assert proc.returncode == 2, proc.stderr
    assert "--ray 127.0.0.1:1: no Ray cluster answers there" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_without_ray_installed_batch_ray_says_how_to_install_it(tmp_path):
    src = one_student(tmp_path)
    fake = tmp_path / "no-ray"               # an environment where `import ray` fails
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError('No module named ray')\n")
    env = dict(os.environ, PYTHONPATH=str(fake))
    proc = subprocess.run([sys.executable, "-m", "grader", "batch", str(src), "--out",
                           str(tmp_path / "out"), "--ray"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--ray needs Ray, which is not installed here" in proc.stderr
    assert "requirements-ray.txt" in proc.stderr


@pytest.mark.parametrize("address,ok", [("local", True), ("auto", True), ("10.1.2.3:6379", True),
                                        ("ray://head.example.edu:10001", True), ("[::1]:6379", True),
                                        ("class/", False), ("head", False), ("ray://head", False)])
def test_addresses_that_ray_accepts(address, ok):
    from grader.batch import ray as ray_batch
    from grader.errors import UsageError
    if ok:
        assert ray_batch.check_address(address) == address
    else:
        with pytest.raises(UsageError, match="put --ray after SRC"):
            ray_batch.check_address(address)


def test_a_prepared_plan_must_come_with_its_own_rubric(tmp_path):
    from grader import engine
    from grader.errors import UngradableError
    from grader.rubric import load_rubric
    rubric, copy = (load_rubric(ROOT / "rubric.yaml") for _ in range(2))
    tasks = [t for t in engine.plan(copy, ("public",)) if t.item.probe != "model"]
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(UngradableError, match="not made of this rubric's items"):
        engine.grade(tmp_path / "a.py", rubric, ("public",), prepared=(tasks, {}))
