"""Hostile submissions graded end to end: no point unearned, nothing left behind.

Each submission is the reference with one hostile piece appended (a function
redefined later in the file wins), so every item it does not attack still
earns its points.  Graded with a copy of rubric.yaml whose budgets are short.
The full isolation runs as root (as in CI); the limits that do not need root
are also checked under basic isolation.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "reference" / "tensorflow_tutorial.py").read_text()
ITEMS = ["Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9", "Q10", "Q11", "model"]
IS_ROOT = os.geteuid() == 0
MARK = "8765.4321"  # an argument no other process on the machine uses


@pytest.fixture(scope="session")
def short_rubric(tmp_path_factory) -> Path:
    data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
    data["limits"]["import_seconds"] = 5
    for item in data["questions"]:
        item["budget_seconds"] = 15 if item["id"] == "model" else 5
    path = tmp_path_factory.mktemp("rubric") / "rubric.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def leftovers(mark: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if mark.encode() in cmdline and b"pytest" not in cmdline:
            found.append(f"{pid}: {cmdline!r}")
    return found


def grade(tmp_path: Path, rubric: Path, code: str, isolation: str) -> tuple[int, dict, float, str]:
    path = tmp_path / "submission" / "tensorflow_tutorial.py"
    path.parent.mkdir(exist_ok=True)
    mark = f"{MARK}{os.getpid()}{time.monotonic_ns() % 10**6}"  # unique to this grade
    path.write_text(REFERENCE + "\n\n# ---- hostile part ----\n" + code.replace(MARK, mark))
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "grader", "check", str(path), "--format", "json",
                          "--rubric", str(rubric), "--isolation", isolation],
                         cwd=ROOT, capture_output=True, text=True, timeout=240,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    elapsed = time.monotonic() - start
    assert run.returncode in (0, 1), run.stderr
    report = json.loads(run.stdout)
    assert not leftovers(mark), leftovers(mark)
    return run.returncode, report, elapsed, run.stderr


def scores(report: dict) -> dict:
    return {q["id"]: (q["score"], q["max_score"]) for q in report["questions"]}


def feedback(report: dict, item: str) -> str:
    q = next(q for q in report["questions"] if q["id"] == item)
    return q["feedback"] + " " + " ".join(c["message"] for c in q["checks"])


def assert_lost_exactly(report: dict, lost: set[str]) -> None:
    """Items attacked lose points (all of them where the call itself failed); no other does."""
    for item, (score, max_score) in scores(report).items():
        if item in lost:
            assert score < max_score, (item, score, feedback(report, item))
            q = next(q for q in report["questions"] if q["id"] == item)
            if q["status"] == "error":
                assert score == 0, (item, score)
        else:
            assert score == max_score, (item, score, feedback(report, item))


# name: (appended code, items that must score 0, feedback substring for the first of them)
CASES = {
    "train_at_import": ("main(['--steps', '200000', '--print-every', '1000'])\n",
                        set(ITEMS), "importing your file"),
    "infinite_loop": ("def compute_cost(Z2, Y):\n    while True:\n        pass\n",
                      {"Q5", "model"}, "timed out after 5 s in compute_cost"),
    "memory_bomb": ("def forward_propagation(X, parameters):\n"
                    "    hog = [bytearray(2**30) for _ in range(64)]\n    return hog\n",
                    {"Q4", "model"}, "MemoryError"),
    "fork_bomb": ("import subprocess as _sp\n"
                  "def initialize_session():\n"
                  f"    return [_sp.Popen(['sleep', '{MARK}']) for _ in range(600)]\n",
                  {"Q8", "model"}, "initialize_session"),
    "os_exit_in_function": ("import os as _os\ndef compute_accuracy(Z2, Y):\n    _os._exit(0)\n",
                            {"Q6"}, "exited (exit code 0) in compute_accuracy"),
    "sys_exit_in_function": ("import sys as _sys\ndef create_train_step(cost, learning_rate=0.001):\n"
                             "    _sys.exit(0)\n", {"Q7", "model"}, "SystemExit"),
    "os_exit_at_import": ("import os as _os\n_os._exit(0)\n", set(ITEMS), "importing your file"),
    "sys_exit_at_import": ("import sys as _sys\n_sys.exit(0)\n", set(ITEMS), "SystemExit"),
    "syntax_error": ("def broken(:\n    pass\n", set(ITEMS), "syntax error"),
    "segfault": ("import ctypes as _ct\ndef evaluate(*args, **kwargs):\n    _ct.string_at(0)\n",
                 {"Q10"}, "SIGSEGV"),
    "monkeypatched_comparisons": (
        "import numpy as _np\n_np.allclose = lambda *a, **k: True\n_np.isclose = lambda *a, **k: True\n"
        "_np.array_equal = lambda *a, **k: True\n"
        "import builtins as _b\n_b.abs = lambda x: 0\n"
        "def compute_cost(Z2, Y):\n    return tf.constant(0.5)\n",
        {"Q5", "model"}, "cost: got 0.5"),
    "fake_reports": (
        "import json as _json, os as _os\n"
        "_fake = {'total': 100.0, 'max_total': 100.0, 'score': 100.0, 'questions': [], 'tests': []}\n"
        "print(_json.dumps(_fake))\n"
        "for _p in ('results.json', 'out/Q6-public.json', '../results.json', 'report.json'):\n"
        "    try:\n        _os.makedirs(_os.path.dirname(_p) or '.', exist_ok=True)\n"
        "        open(_p, 'w').write(_json.dumps(_fake))\n    except OSError:\n        pass\n"
        "def compute_accuracy(Z2, Y):\n    print(_json.dumps(_fake))\n"
        "    raise RuntimeError('no answer')\n",
        {"Q6"}, "RuntimeError"),
    "gigabyte_of_output": (
        "import os as _os\n_train = train\n"
        "def train(*args, **kwargs):\n    line = b'x' * (1 << 20) + b'\\n'\n"
        "    for _ in range(1024):\n        _os.write(1, line)\n"
        "    return _train(*args, **kwargs)\n", set(), ""),
    "catches_signals": ("import signal as _sig\n"
                        "def initialize_session():\n"
                        "    for s in (_sig.SIGTERM, _sig.SIGXCPU, _sig.SIGINT, _sig.SIGHUP):\n"
                        "        _sig.signal(s, _sig.SIG_IGN)\n    while True:\n        pass\n",
                        {"Q8", "model"}, "timed out after 5 s in initialize_session"),
    "setsid_grandchild": ("import subprocess as _sp\n_session = initialize_session\n"
                          "def initialize_session():\n"
                          f"    _sp.Popen(['sleep', '{MARK}'], start_new_session=True)\n"
                          "    return _session()\n", set(), ""),
    "rigged_eq": ("class _Liar:\n    def __eq__(self, other):\n        return True\n"
                  "    def __ne__(self, other):\n        return False\n"
                  "    def __float__(self):\n        raise TypeError('no')\n"
                  "    def __array__(self, *a, **k):\n        raise TypeError('no')\n"
                  "def evaluate(*args, **kwargs):\n    return _Liar(), _Liar()\n"
                  "def compute_accuracy(Z2, Y):\n    return _Liar()\n",
                  {"Q6", "Q10"}, ""),
}
BASIC_CASES = ["infinite_loop", "os_exit_in_function", "segfault", "setsid_grandchild",
               "fork_bomb", "memory_bomb"]
PARAMS = [pytest.param(name, "auto", id=name) for name in CASES] + \
         [pytest.param(name, "basic", id=f"{name}-basic") for name in BASIC_CASES]


@pytest.mark.parametrize("name,isolation", PARAMS)
def test_hostile_submission(name, isolation, tmp_path, short_rubric):
    code, lost, words = CASES[name]
    exit_code, report, elapsed, _ = grade(tmp_path, short_rubric, code, isolation)
    assert_lost_exactly(report, lost)
    assert exit_code == (1 if lost else 0)
    if lost and words:
        first = next(i for i in ITEMS if i in lost)
        assert words.lower() in feedback(report, first).lower(), feedback(report, first)
    assert elapsed < 150
    if isolation == "auto" and IS_ROOT:
        assert report["isolation"] == "full"


needs_root = pytest.mark.skipif(not IS_ROOT, reason="full isolation needs root")


@needs_root
def test_the_reference_and_the_repository_are_out_of_reach(tmp_path, short_rubric):
    probe = f'''
import os
_forward = forward_propagation
def _hunt():
    seen = []
    for start in (os.getcwd(), os.path.dirname(os.path.abspath(__file__)), {str(ROOT)!r}, "/"):
        here = start
        for _ in range(8):
            for name in ("reference/tensorflow_tutorial.py", "rubric.yaml", "grader/engine.py",
                         ".cache/expected"):
                if os.path.exists(os.path.join(here, name)):
                    seen.append(os.path.join(here, name))
            here = os.path.dirname(here)
    return seen
def forward_propagation(X, parameters):
    found = _hunt()
    if found:
        raise RuntimeError("found " + ", ".join(found))
    return _forward(X, parameters)
def compute_cost(Z2, Y):
    for path in ({str(ROOT / "reference" / "tensorflow_tutorial.py")!r}, "/root/.bashrc", "/etc/shadow"):
        try:
            open(path).read()
            raise RuntimeError("read " + path)
        except OSError:
            pass
    raise RuntimeError("nothing readable")
'''
    _, report, _, _ = grade(tmp_path, short_rubric, probe, "auto")
    assert report["isolation"] == "full"
    assert scores(report)["Q4"][0] == scores(report)["Q4"][1], feedback(report, "Q4")
    assert "nothing readable" in feedback(report, "Q5")


@needs_root
def test_no_network_and_no_writes_outside_the_sandbox(tmp_path, short_rubric):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                pass
    stop = threading.Event()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    targets = [ROOT / "escape-marker", tmp_path / "escape-marker", Path("/tmp") / f"escape-{MARK}"]
    code = f'''
import socket as _socket
_cost = compute_cost
for _path in {[str(t) for t in targets]!r}:
    try:
        open(_path, "w").write("escaped")
    except OSError:
        pass
def compute_cost(Z2, Y):
    try:
        _socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    except OSError as exc:
        raise RuntimeError("no network: " + exc.__class__.__name__)
    return _cost(Z2, Y)
'''
    try:
        _, report, _, _ = grade(tmp_path, short_rubric, code, "auto")
    finally:
        stop.set()
        thread.join()
        server.close()
    assert not accepted
    assert "no network" in feedback(report, "Q5")
    assert [t for t in targets if t.exists()] == []
