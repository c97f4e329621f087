"""The zygote (grader/zygote.py): children forked warm grade exactly as fresh ones, in the
same sandbox, and inherit no secret.

Grades run in this process through ``engine.grade`` (which never imports TensorFlow
here: the zygote and the children do), once with ``startup="zygote"`` and once with
``startup="fresh"``. Full isolation, and so the zygote, needs root.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import at_import

from grader import engine, zygote
from grader.report import to_dict
from grader.rubric import load_rubric

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "reference" / "tensorflow_tutorial.py").read_text()
STARTER = (ROOT / "starter" / "tensorflow_tutorial.py").read_text()
IS_ROOT = os.geteuid() == 0
pytestmark = pytest.mark.skipif(not (IS_ROOT and zygote.possible()),
                                reason="the zygote serves full isolation: it needs root on Linux")


def rubric_with(tmp_path: Path, budgets: dict | None = None, seed: int | None = None,
                import_seconds: int = 20):
    """rubric.yaml with generous budgets (60 s, 240 s for model) unless ``budgets`` says."""
    data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
    data["limits"]["import_seconds"] = import_seconds
    for item in data["questions"]:
        default = 240 if item["id"] == "model" else 60
        item["budget_seconds"] = (budgets or {}).get(item["id"], default)
        if item["id"] == "model":  # 300 steps: the reference still reaches 0.92 (0.80 passes)
            item["params"]["public"]["steps"] = 300
    if seed is not None:
        data["seed"] = seed
    path = tmp_path / f"rubric-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_rubric(path)


def submission(tmp_path: Path, text: str, name: str = "sub") -> Path:
    path = tmp_path / name / "tensorflow_tutorial.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def mutant(name: str) -> str:
    entry = next(m for m in yaml.safe_load((ROOT / "tests/corpus/mutants.yaml").read_text())
                 if m["name"] == name)
    text = REFERENCE
    for old, new in entry["replace"]:
        assert text.count(old) == 1, (name, old)
        text = text.replace(old, new)
    return text


def comparable(report) -> dict:
    data = to_dict(report)
    data.pop("startup")
    return data


# ------------------------------------------------------------ the same reports

HOSTILE = {
    "infinite_loop_in_cost": "def compute_cost(Z2, Y):\n    while True:\n        pass\n",
    "os_exit_in_function": "import os as _os\ndef compute_accuracy(Z2, Y):\n    _os._exit(0)\n",
    "segfault": "import ctypes as _ct\ndef evaluate(*args, **kwargs):\n    _ct.string_at(0)\n",
    "sys_exit_at_import": "import sys as _sys\n_sys.exit(0)\n",
    "patches_the_runner_and_tensorflow": (
        "import sys as _sys\nimport tensorflow.compat.v1 as _tf\n"
        "_runner = _sys.modules['__main__']\n"
        "_runner.PROBES['compute_accuracy'] = lambda h, i, p: {'value_accuracy': 1.0}\n"
        "_tf.Session = None\n"),
    "leaks_threads_and_forks": (
        "import os as _os, threading as _th, time as _time\n"
        "_th.Thread(target=lambda: _time.sleep(3600)).start()\n"
        "if _os.fork() == 0:\n    _time.sleep(3600)\n"),
}
CASES = {
    "reference": REFERENCE,
    "starter": STARTER,
    "cost_summed": mutant("cost_summed"),
    "weights_zeros": mutant("weights_zeros"),
    "accuracy_wrong_axis": mutant("accuracy_wrong_axis"),
    **{name: REFERENCE + "\n\n" + code for name, code in HOSTILE.items()},
}


BASIC_CASES = ["reference", "infinite_loop_in_cost", "segfault", "leaks_threads_and_forks"]


@pytest.mark.parametrize("name,isolation", [pytest.param(n, "auto", id=n) for n in CASES] +
                         [pytest.param(n, "basic", id=f"{n}-basic") for n in BASIC_CASES])
def test_a_forked_child_grades_exactly_as_a_fresh_one(name, isolation, tmp_path):
    rubric = rubric_with(tmp_path, budgets={"Q5": 5} if name == "infinite_loop_in_cost" else None)
    path = submission(tmp_path, CASES[name])
    warm = engine.grade(path, rubric, isolation=isolation, startup="zygote")
    fresh = engine.grade(path, rubric, isolation=isolation, startup="fresh")
    assert (warm.startup, fresh.startup) == ("zygote", "fresh")
    assert warm.isolation == fresh.isolation == ("full" if isolation == "auto" else "basic")
    assert comparable(warm) == comparable(fresh)
    if name == "reference":
        assert warm.total == warm.max_total


def test_the_text_report_says_how_the_children_started(tmp_path):
    from grader.report import to_text
    report = engine.grade(submission(tmp_path, STARTER), rubric_with(tmp_path), startup="zygote")
    assert to_text(report).rstrip().splitlines()[-1].endswith("(isolation: full; startup: zygote)")
    assert json.loads(json.dumps(to_dict(report)))["startup"] == "zygote"


def test_one_submission_cannot_spoil_the_zygote_for_the_next(tmp_path):
    """A submission that corrupts TensorFlow and the runner in its child: the next
    child, forked from the same zygote, starts clean."""
    rubric = rubric_with(tmp_path)
    spoiler = REFERENCE + "\n\n" + HOSTILE["patches_the_runner_and_tensorflow"] + \
        "import numpy as _np\n_np.allclose = lambda *a, **k: True\n"
    before = zygote.for_env(engine._zygote_env(rubric)).pid
    engine.grade(submission(tmp_path, spoiler, "spoiler"), rubric, startup="zygote")
    report = engine.grade(submission(tmp_path, REFERENCE, "next"), rubric, startup="zygote")
    assert zygote.for_env(engine._zygote_env(rubric)).pid == before  # the same zygote
    assert report.startup == "zygote"
    assert report.total == report.max_total


# ------------------------------------------------------------------ fallback

def test_a_zygote_that_refuses_means_fresh_children(tmp_path, monkeypatch):
    """A TensorFlow build that starts threads at import: the zygote says it is unsafe."""
    fake = tmp_path / "zygote_server.py"
    fake.write_text("import os, socket\n"
                    "s = socket.socket(fileno=int(os.environ['GRADER_ZYGOTE_FD']))\n"
                    "s.send(b'unsafe TensorFlow started 3 thread(s) at import')\n")
    monkeypatch.setattr(zygote, "SERVER", fake)
    zygote.shutdown()
    rubric = rubric_with(tmp_path)
    refused = zygote.for_env(engine._zygote_env(rubric))
    try:
        report = engine.grade(submission(tmp_path, REFERENCE), rubric, startup="auto")
    finally:
        zygote.shutdown()  # the next tests start the real one
    assert report.startup == "fresh"
    assert report.total == report.max_total
    assert not refused.alive and "thread(s) at import" in refused.reason


def test_a_zygote_that_dies_means_fresh_children(tmp_path):
    rubric = rubric_with(tmp_path)
    warm = zygote.for_env(engine._zygote_env(rubric))
    assert warm.ready(120)
    os.kill(warm.pid, 9)
    time.sleep(0.5)
    report = engine.grade(submission(tmp_path, STARTER), rubric, startup="zygote")
    assert report.startup == "fresh"
    assert all(q.score == 0 for q in report.questions)
    assert not warm.alive and "did not fork" in warm.reason
    assert zygote.for_env(engine._zygote_env(rubric)) is not warm  # the next run starts anew


def test_the_switch_chooses_fresh_children(tmp_path, monkeypatch):
    rubric = rubric_with(tmp_path)
    path = submission(tmp_path, STARTER)
    monkeypatch.setenv(zygote.MODE_VARIABLE, "fresh")
    assert engine.grade(path, rubric).startup == "fresh"
    assert engine.grade(path, rubric, isolation="basic").startup == "fresh"
    monkeypatch.setenv(zygote.MODE_VARIABLE, "auto")
    assert engine.grade(path, rubric, isolation="basic").startup == "zygote"


# --------------------------------------------------------------- no secret

def _readable_memory(pid: int):
    """(start, bytes) of every readable mapping of ``pid`` (root reads /proc/PID/mem)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("r") or fields[-1] in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            try:
                mem.seek(start)
                yield start, mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue


def _found_in_memory(pid: int, needles: dict[str, bytes]) -> set[str]:
    found = set()
    for _, blob in _readable_memory(pid):
        found |= {name for name, needle in needles.items() if needle in blob}
    return found


def _status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        pid = int(_status(pid)["PPid"])
        chain.append(pid)
    return chain


def test_a_forked_child_holds_no_secret_in_memory_or_on_its_filesystem(tmp_path):
    """The hidden seed, the reference's source and the test labels: not in the zygote's
    memory, not in a forked child's memory, not readable from its filesystem."""
    seed = random.randrange(10**8, 10**9)
    rubric = rubric_with(tmp_path, budgets={"Q5": 300}, seed=seed)
    x_train, y_train, x_test, y_test, _ = engine.grading_data(None)
    data_file = engine.load_loader().offline_subset_path()
    labels = bytes(bytearray(int(v) for v in y_test[:64]))
    shipped = set(STARTER.splitlines()) | set((ROOT / "starter/mnist_loader.py").read_text().splitlines())
    own = sorted((line.strip() for line in REFERENCE.splitlines()
                  if len(line.strip()) > 30 and line not in shipped), key=len, reverse=True)[:4]
    needles = {"hidden seed": str(seed).encode(),
               "test labels": labels,
               "test labels (int64)": y_test[:32].astype("<i8").tobytes(),
               "labels file digest": hashlib.sha256(Path(data_file).read_bytes()).hexdigest().encode(),
               "reference digest": hashlib.sha256(REFERENCE.encode()).hexdigest().encode(),
               **{f"reference line {i}": line.encode() for i, line in enumerate(own)}}
    name = f"zt{random.randrange(16**8):08x}"  # the child's process name
    present = f"present-{name}"  # in the child's own code: the scan must find it
    # The child holds the needles XOR-masked: its memory must not hold them itself.
    masked = {k: bytes(b ^ 0x5A for b in v).hex() for k, v in needles.items()}
    # Files of the secrets' sizes are read and compared; the seed is searched in every
    # small file.
    sizes = [len(REFERENCE.encode()), os.path.getsize(data_file),
             (ROOT / "rubric.yaml").stat().st_size]
    digests = [hashlib.sha256(REFERENCE.encode()).hexdigest(),
               hashlib.sha256(Path(data_file).read_bytes()).hexdigest()]
    masked_digests = [bytes(b ^ 0x5A for b in d.encode()).hex() for d in digests]
    code = f'''
import ctypes as _ct, hashlib as _hl, os as _os, signal as _sig, time as _time
_MASK = bytes(b ^ 0x5A for b in range(256))
_NEEDLES = {{k: bytes.fromhex(v) for k, v in {masked!r}.items()}}
_DIGESTS = [bytes.fromhex(d) for d in {masked_digests!r}]
_SIZES = {sizes!r}
_MARK = {present!r}

_READ, _SAID = [], []  # Q5's other checks call this again: the search runs once

def compute_cost(Z2, Y):
    if _SAID:
        raise RuntimeError(_SAID[0])
    found, files = [], 0
    for top, dirs, names in _os.walk("/"):
        dirs[:] = [d for d in dirs if _os.path.join(top, d) not in ("/proc", "/sys", "/dev")]
        for n in names:
            path = _os.path.join(top, n)
            try:
                if _os.path.islink(path) or not _os.path.isfile(path):
                    continue
                files += 1
                size = _os.path.getsize(path)
                if size not in _SIZES and size > 4096:
                    continue
                blob = open(path, "rb").read()
            except OSError:
                continue
            if _hl.sha256(blob).hexdigest().encode().translate(_MASK) in _DIGESTS:
                found.append(f"a secret file at {{path}}")
            blob = blob.translate(_MASK)
            found += [f"{{k}} in {{path}}" for k, v in _NEEDLES.items() if v in blob]
    _sig.signal(_sig.SIGUSR1, lambda *_: _READ.append(1))  # the test has read our memory
    _ct.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)  # PR_SET_NAME: the test finds us
    _until = _time.monotonic() + 120
    while not _READ and _time.monotonic() < _until:
        _time.sleep(0.05)
    _SAID.append(f"searched {{files}} files; found: {{found or 'nothing'}}")
    raise RuntimeError(_SAID[0])
'''
    path = submission(tmp_path, STARTER + "\n\n" + at_import(code))
    warm = zygote.for_env(engine._zygote_env(rubric))
    assert warm.ready(300)
    graded: list = []
    thread = threading.Thread(target=lambda: graded.append(
        engine.grade(path, rubric, startup="zygote")))
    thread.start()
    child, deadline = None, time.monotonic() + 240
    while child is None and time.monotonic() < deadline and thread.is_alive():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                    child = int(pid)
            except OSError:
                continue
        time.sleep(0.2)
    assert child is not None, "the forked child was not found"
    try:
        in_zygote = _found_in_memory(warm.pid, {**needles, "mark": present.encode()})
        in_child = _found_in_memory(child, {**needles, "mark": present.encode()})
        status = _status(child)
        own_ns = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("mnt", "pid", "net", "ipc", "uts")}
        child_ns = {ns: os.readlink(f"/proc/{child}/ns/{ns}") for ns in own_ns}
        ancestors = _ancestors(child)
    finally:
        try:
            os.kill(child, signal.SIGUSR1)  # done reading: let it finish its grade
        except ProcessLookupError:
            pass
        thread.join()
    report = graded[0]
    assert report.startup == "zygote"
    assert warm.pid in ancestors  # forked from the zygote, not started fresh
    assert in_child == {"mark"}, in_child  # the scan works, and finds nothing else
    assert in_zygote == set(), in_zygote
    uid = int(status["Uid"].split()[0])
    assert 61000 <= uid < 62000 and status["Uid"].split() == [str(uid)] * 4
    assert status["Groups"].strip() == "" and status["NoNewPrivs"].strip() == "1"
    assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0
    assert all(child_ns[ns] != own_ns[ns] for ns in own_ns), (child_ns, own_ns)
    q5 = next(q for q in report.questions if q.id == "Q5")
    message = " ".join(c.message for c in q5.checks)
    assert "found: nothing" in message, message
    assert int(re.search(r"searched (\d+) files", message).group(1)) > 1000, message


def test_a_zygote_that_cannot_start_says_why_and_is_not_used(monkeypatch):
    """Popen fails (no memory, no such interpreter): the zygote is failed, with the
    reason, and leaves no folder; the grade then starts its children fresh."""
    import subprocess as sp

    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(sp, "Popen", refuse)
    made = zygote.Zygote({"PATH": "/usr/bin:/bin"})
    assert not made.alive and not made.ready(0)
    assert made.reason.startswith("cannot start:") and "Cannot allocate memory" in made.reason
    assert made.pid is None and not os.path.exists(made._home)


def test_the_submissions_own_session_uses_the_rubrics_threads(tmp_path):
    """A bare tf.Session() in a submission takes the runtime's defaults, which TensorFlow
    would set to every core: two children side by side then fight for them. The child
    makes the rubric's ``threads`` (1) the default, warm or fresh."""
    probe = ("def compute_cost(Z2, Y):\n"
             "    import tensorflow.compat.v1 as _tf\n"
             "    _config = _tf.Session()._config\n"
             "    raise ValueError(f'threads {_config.intra_op_parallelism_threads} '\n"
             "                     f'{_config.inter_op_parallelism_threads}')\n")
    path = submission(tmp_path, REFERENCE + "\n\n" + probe)
    rubric = rubric_with(tmp_path)
    for startup in ("zygote", "fresh"):
        report = engine.grade(path, rubric, startup=startup, visibilities=("public",))
        q5 = next(q for q in to_dict(report)["questions"] if q["id"] == "Q5")
        assert "threads 1 1" in json.dumps(q5), (startup, q5)
