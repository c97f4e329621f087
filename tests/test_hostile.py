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

from conftest import IN_PROCESS, grader_main
from grader.notebook import filter_script

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "reference" / "tensorflow_tutorial.py").read_text()
ITEMS = ["Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9", "Q10", "Q11", "model"]
IS_ROOT = os.geteuid() == 0
MARK = "8765.4321"  # an argument no other process on the machine uses


_RUBRICS: dict = {}


def rubric_for(tmp_root: Path, short: frozenset = frozenset(), import_seconds: int = 20) -> Path:
    """rubric.yaml with generous budgets (no verdict depends on the machine's load), except
    5 s for the ``short`` items (those a case makes hang) and its import budget; the model
    item trains 300 steps, not 1,500 (what is attacked here is the boundary, not learning)."""
    key = (short, import_seconds)
    if key not in _RUBRICS:
        data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
        data["limits"]["import_seconds"] = import_seconds
        for item in data["questions"]:
            item["budget_seconds"] = 5 if item["id"] in short else (240 if item["id"] == "model"
                                                                     else 60)
            if item["id"] == "model":  # 300 steps: the reference still reaches 0.92 (0.80 passes)
                item["params"]["public"]["steps"] = 300
        path = tmp_root / f"rubric-{len(_RUBRICS)}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        _RUBRICS[key] = path
    return _RUBRICS[key]


@pytest.fixture(scope="session")
def rubric_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rubrics")


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


# Runs the grader and reports its own peak memory (the parent's, not the sandbox's).
_MEASURED = (
    "import resource, runpy, sys\n"
    "sys.argv = ['grader'] + sys.argv[2:]\n"
    "try:\n    runpy.run_module('grader', run_name='__main__')\n"
    "finally:\n"
    "    with open(__peak__, 'w') as f:\n"
    "        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
)


def at_import(code: str) -> str:
    """``code`` run as the file is imported, all of it.  The grader skips a top-level
    statement that calls anything, as it skips a tutorial run at top level; a class body
    may call what an import bound, here ``exec``, which then runs the rest."""
    return f"import builtins as _b\nclass _AtImport:\n    _ = _b.exec({code!r}, _b.globals())\n"


def grade(tmp_path: Path, rubric: Path, code: str, isolation: str,
          base: str = REFERENCE, measure: bool = False) -> tuple[int, dict, int | None, str]:
    """(exit status, JSON report, the grader's peak RSS in KiB, stderr).

    ``measure``: in a grader process of its own, whose peak memory is the third
    value (cases that flood the parent with bytes). Otherwise the command's own
    ``main`` runs in this process (see conftest.grader_main: one warm zygote for
    every grade of this pytest worker) and the peak is None.
    """
    path = tmp_path / "submission" / "tensorflow_tutorial.py"
    path.parent.mkdir(exist_ok=True)
    mark = f"{MARK}{os.getpid()}{time.monotonic_ns() % 10**6}"  # unique to this grade
    hostile = code.replace(MARK, mark)
    if filter_script(base + hostile, path.name) is not None:
        hostile = at_import(hostile)   # run as written, not skipped as a tutorial's top level
    path.write_text(base + "\n\n# ---- hostile part ----\n" + hostile)
    scratch = tmp_path / "grader-tmp"
    scratch.mkdir(exist_ok=True)
    argv = ["check", str(path), "--format", "json", "--rubric", str(rubric), "--isolation", isolation]
    if measure or not IN_PROCESS:
        peak = tmp_path / "peak"
        wrapper = _MEASURED.replace("__peak__", repr(str(peak)))
        run = subprocess.run([sys.executable, "-c", wrapper, "-", *argv],
                             cwd=ROOT, capture_output=True, text=True, timeout=900,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(scratch)))
        code, stdout, stderr, peak_kib = run.returncode, run.stdout, run.stderr, int(peak.read_text())
    else:
        (code, stdout, stderr), peak_kib = grader_main(argv, tmpdir=scratch), None
    assert code in (0, 1), stderr
    report = json.loads(stdout)
    assert not leftovers(mark), leftovers(mark)
    assert list(scratch.iterdir()) == [], "the grader left files behind"
    return code, report, peak_kib, stderr


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


# Cases that must make an item hang get a short budget there (and only there).
SHORT = {"train_at_import": (frozenset(), 5), "infinite_loop": (frozenset({"Q5"}), 20),
         "catches_signals": (frozenset({"Q8"}), 20)}
PARENT_PEAK_KIB = 400 * 1024  # the grader's own process: numpy, the data, the reader
# The cases that send the parent the most bytes: graded in a process of their own,
# whose peak memory is asserted (`make bench --only parent` measures the worst flood).
FLOODS = {"gigabyte_of_output", "fake_reports", "giant_frame", "nested_json", "spams_events"}


@pytest.mark.parametrize("name,isolation", PARAMS)
def test_hostile_submission(name, isolation, tmp_path, rubric_root):
    code, lost, words = CASES[name]
    rubric = rubric_for(rubric_root, *SHORT.get(name, (frozenset(), 20)))
    exit_code, report, peak, _ = grade(tmp_path, rubric, code, isolation, measure=name in FLOODS)
    assert_lost_exactly(report, lost)
    assert exit_code == (1 if lost else 0)
    if lost and words:
        first = next(i for i in ITEMS if i in lost)
        assert words.lower() in feedback(report, first).lower(), feedback(report, first)
    assert peak is None or peak < PARENT_PEAK_KIB
    if isolation == "auto" and IS_ROOT:
        assert report["isolation"] == "full"


needs_root = pytest.mark.skipif(not IS_ROOT, reason="full isolation needs root")


@needs_root
def test_the_reference_and_the_repository_are_out_of_reach(tmp_path, rubric_root):
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
    _, report, _, _ = grade(tmp_path, rubric_for(rubric_root), probe, "auto")
    assert report["isolation"] == "full"
    assert scores(report)["Q4"][0] == scores(report)["Q4"][1], feedback(report, "Q4")
    assert "nothing readable" in feedback(report, "Q5")


@needs_root
def test_no_network_and_no_writes_outside_the_sandbox(tmp_path, rubric_root):
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
        _, report, _, _ = grade(tmp_path, rubric_for(rubric_root), code, "auto")
    finally:
        stop.set()
        thread.join()
        server.close()
    assert not accepted
    assert "no network" in feedback(report, "Q5")
    assert [t for t in targets if t.exists()] == []


# ---------------------------------------------------------------- the trust boundary
# Each class of attack on what the parent reads from the child, every path it
# opens and every clock it keeps.

STARTER = (ROOT / "starter" / "tensorflow_tutorial.py").read_text()
CHANNEL = "int(_os.environ['GRADER_CHANNEL_FD'])"

BOUNDARY_CASES = {
    # The parent follows no path the child controls: links to reference results buy nothing.
    "links_to_reference_results": (STARTER, (
        "import os as _os\n"
        f"for _target in ({str(ROOT / '.cache' / 'expected')!r}, {str(ROOT / 'grader' / 'expected')!r},"
        f" {str(ROOT)!r}, '/'):\n"
        "    for _name in ('out', 'progress', 'results', 'expected', 'job.json', 'inputs'):\n"
        "        try:\n            _os.replace(_name, _name + '.old')\n        except OSError:\n"
        "            pass\n"
        "        try:\n            _os.symlink(_target, _name)\n        except OSError:\n"
        "            pass\n"), set(ITEMS), "", frozenset()),
    # The child cannot stretch the clock: rewriting files does nothing ...
    "sleeps_and_rewrites_files": (REFERENCE, (
        "import os as _os, time as _time\n"
        "def compute_cost(Z2, Y):\n    while True:\n        _time.sleep(0.05)\n"
        "        for _name in ('progress', 'out/Q5-public.json'):\n"
        "            try:\n                open(_name, 'a').write('done Q5-public\\n')\n"
        "            except OSError:\n                pass\n"), {"Q5", "model"},
        "timed out after 5 s in compute_cost", frozenset({"Q5"})),
    # ... and a message out of turn ends the child, it never restarts a budget.
    "spams_events": (REFERENCE, (
        "import os as _os, time as _time\n"
        "def compute_cost(Z2, Y):\n    while True:\n        _time.sleep(0.05)\n"
        f"        _os.write({CHANNEL}, b'EVNT\\0\\0\\0\\x05ready')\n"), {"Q5", "model"},
        "could not read what your code returned", frozenset({"Q5"})),
    # Sizes are checked from the header, before anything is read or allocated.
    "giant_frame": (REFERENCE, (
        "import os as _os\n"
        "def compute_cost(Z2, Y):\n"
        f"    fd = {CHANNEL}\n    _os.write(fd, b'RSLT\\xff\\xff\\xff\\xff')\n"
        "    for _ in range(256):\n        _os.write(fd, bytes(1 << 20))\n"), {"Q5", "model"},
        "larger than the grader accepts", frozenset()),
    "nested_json": (REFERENCE, (
        "import os as _os, struct as _struct\n"
        "def compute_cost(Z2, Y):\n"
        "    header = b'{\"task\": \"Q5-public\", \"meta\": ' + b'[' * 100000 + b']' * 100000 + b', \"arrays\": []}'\n"
        "    payload = _struct.pack('>I', len(header)) + header\n"
        f"    _os.write({CHANNEL}, b'RSLT' + _struct.pack('>I', len(payload)) + payload)\n"
        "    raise RuntimeError('sent')\n"), {"Q5", "model"}, "nested too deeply", frozenset()),
    # Nothing the child does makes it "ungradable": it scores, with feedback.
    "stderr_and_exit_at_import": (REFERENCE, (
        "import os as _os, sys as _sys\n"
        "_sys.stderr.write('Traceback (most recent call last):\\nungradable: a grader bug\\n')\n"
        "_sys.stderr.flush()\n_os._exit(3)\n"), set(ITEMS), "exit code 3", frozenset()),
    "closes_the_channel": (REFERENCE, (
        "import os as _os\n"
        "def compute_accuracy(Z2, Y):\n"
        f"    _os.close({CHANNEL})\n    import time\n    time.sleep(3600)\n"), {"Q6"},
        "timed out after 5 s in compute_accuracy", frozenset({"Q6"})),
    # Clean-up cannot be defeated.
    "deep_directory_chain": (REFERENCE, (
        "import os as _os\n"
        "_here = _os.open('.', _os.O_RDONLY)\n"
        "for _ in range(5000):  # until the full sandbox's inode cap stops it\n"
        "    try:\n        _os.mkdir('d', dir_fd=_here)\n    except OSError:\n        break\n"
        "    _next = _os.open('d', _os.O_RDONLY, dir_fd=_here)\n"
        "    _os.close(_here)\n    _here = _next\n"
        "try:\n    _os.symlink('/', 'escape', dir_fd=_here)\nexcept OSError:\n    pass\n"
        "_os.chmod(_here, 0)\n"), set(), "", frozenset()),
}
BOUNDARY_PARAMS = [pytest.param(name, "auto", id=name) for name in BOUNDARY_CASES] + \
    [pytest.param(name, "basic", id=f"{name}-basic")
     for name in ("links_to_reference_results", "sleeps_and_rewrites_files", "giant_frame",
                  "deep_directory_chain", "stderr_and_exit_at_import")]


@pytest.mark.parametrize("name,isolation", BOUNDARY_PARAMS)
def test_the_boundary_holds(name, isolation, tmp_path, rubric_root):
    base, code, lost, words, short = BOUNDARY_CASES[name]
    rubric = rubric_for(rubric_root, short)
    exit_code, report, peak, _ = grade(tmp_path, rubric, code, isolation, base=base,
                                       measure=name in FLOODS)
    if base is STARTER:
        assert report["total"] == 0, scores(report)
    else:
        assert_lost_exactly(report, lost)
    assert exit_code == (1 if lost else 0)
    if words:
        first = next(i for i in ITEMS if i in lost)
        assert words.lower() in feedback(report, first).lower(), feedback(report, first)
    assert peak is None or peak < PARENT_PEAK_KIB


# A file that implements nothing and forges, inside its own process, every fact
# its probes report: structure, constants and echoes of its own inputs, but no
# computation of an answer. What it can buy is the limit stated in the README.
FORGER = '''
import sys as _sys
import numpy as _np
_runner = _sys.modules["__main__"]

def _t(shape, dtype="float32", op="Placeholder", **extra):
    return {"type": "Tensor", "is_tensor": True, "dtype": dtype, "shape": shape, "op": op, **extra}

def _parameters(h, inputs, params):
    n = params.get("n_hidden") or 128
    out = {"keys": ["W1", "W2", "b1", "b2"]}
    for key, shape in (("W1", [784, n]), ("b1", [n]), ("W2", [n, 10]), ("b2", [10])):
        out[key] = _t(shape, op="VariableV2", is_variable=True, trainable=True)
        scale = (2.0 / sum(shape)) ** 0.5 if len(shape) == 2 else 0.0
        out["value_" + key] = (_np.random.randn(*shape) * scale).astype(_np.float32)
    return out

def _forward(h, inputs, params):
    m = len(inputs["X"])
    return {"Z2": _t([None, 10], op="Add"), "A2": _t([None, 10], op="Softmax"),
            "value_Z2": _np.zeros((m, 10)), "value_A2": _np.full((m, 10), 0.1)}

def _step(h, inputs, params):
    steps = int(params.get("steps", 15))
    falling = _np.linspace(3.0, 1.0, steps + 1)
    return {"step": {"type": "Operation", "is_tensor": False, "op": "NoOp"},
            "step_lr0": {"type": "Operation", "is_tensor": False, "op": "NoOp"},
            "value_costs": falling, "value_costs_lr0": _np.full(steps + 1, 3.0),
            **{"value_" + k: _np.asarray(v) for k, v in inputs.items()}}

def _session(h, inputs, params):
    return {"session": {"type": "Session", "is_tensor": False}, "is_session": True,
            "same_graph": True, "uninitialized": [], "n_variables": 4, "value_a": inputs["A"]}

def _train(h, inputs, params):
    steps, batch = int(params["num_steps"]), int(params["batch_size"])
    every = int(params["print_every"])
    printed = "".join(f"step {i} cost 0.0\\n" for i in range(0, steps, every))
    return {"printed": printed, "batch_sizes": [batch] * steps,
            "value_batch_costs": _np.zeros(steps), "steps_run": steps,
            "returned": {"type": "list", "element_types": ["float"]},
            "value_returned": _np.zeros(steps)}

_runner.PROBES.update({
    "create_placeholders": lambda h, i, p: {"X": _t([None, 28, 28]), "Y": _t([None, 10])},
    "initialize_parameters": _parameters,
    "forward_propagation": _forward,
    "compute_cost": lambda h, i, p: {"cost": _t([], op="Mean"), "value_cost": _np.float64(0.0)},
    "compute_accuracy": lambda h, i, p: {"accuracy": _t([], op="Mean"),
                                         "value_accuracy": _np.float64(0.0)},
    "create_train_step": _step,
    "initialize_session": _session,
    "train": _train,
    "evaluate": lambda h, i, p: {"returned": {"type": "tuple", "element_types": ["float", "float"]},
                                 "value_returned": _np.zeros(2)},
    "model": lambda h, i, p: {"value_predictions": _np.zeros(len(i["test_images"]), _np.int64),
                              "value_costs": _np.linspace(2, 0.1, 100), "learning_rate": 0.001},
})
'''
FORGED_LIMIT = 20  # the README's security model states this number


def test_a_forger_that_implements_nothing_earns_little(tmp_path, rubric_root):
    _, report, _, _ = grade(tmp_path, rubric_for(rubric_root), FORGER, "auto", base=STARTER)
    got = {item: score for item, (score, _) in scores(report).items()}
    assert got["model"] == 0
    assert report["total"] <= FORGED_LIMIT, json.dumps(got)


def _needles() -> dict[str, bytes]:
    """What must not be reachable from a sandbox: reference lines that are nowhere else."""
    shipped = {line.strip() for path in ("starter/tensorflow_tutorial.py", "starter/mnist_loader.py")
               for line in (ROOT / path).read_text().splitlines()}
    own = [line.strip() for line in REFERENCE.splitlines()
           if len(line.strip()) > 30 and line.strip() not in shipped]
    return {f"reference line {i}": line.encode() for i, line in
            enumerate(sorted(own, key=len, reverse=True)[:4])}


@needs_root
@pytest.mark.parametrize("isolation", ["auto", "basic"])
def test_no_secret_is_reachable_from_the_sandbox(isolation, tmp_path, rubric_root):
    """Every file the sandbox can read, and its environment, searched for the hidden seed, the
    reference's source and the file holding the test labels."""
    import hashlib
    import random
    from grader import engine

    data_file = engine.load_loader().offline_subset_path()
    assert data_file and os.path.isfile(data_file)
    seed = random.randrange(10**8, 10**9)
    data = yaml.safe_load(rubric_for(rubric_root).read_text())
    data["seed"] = seed
    for item in data["questions"]:
        if item["id"] == "Q5":
            item["budget_seconds"] = 600
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text(yaml.safe_dump(data, sort_keys=False))
    needles = {"hidden seed": str(seed).encode(), **_needles()}
    encoded = {name: value.hex() for name, value in needles.items()}
    labels_digest = hashlib.sha256(Path(data_file).read_bytes()).hexdigest()
    code = f'''
import hashlib as _hashlib, os as _os
_NEEDLES = {{k: bytes.fromhex(v) for k, v in {encoded!r}.items()}}
_DIGEST, _SIZE = {labels_digest!r}, {os.path.getsize(data_file)!r}

_SAID = []  # Q5's other checks call this again: the search runs once

def compute_cost(Z2, Y):
    if _SAID:
        raise RuntimeError(_SAID[0])
    found, files = [], 0
    mine = _os.path.abspath(__file__)
    for value in _os.environ.values():
        found += [k for k, n in _NEEDLES.items() if n in value.encode()]
    import sys as _sys
    seen = set()
    # "/" may not be listable (Landlock): start from every tree a process could know about too
    roots = ["/", "/usr", "/etc", "/opt", "/srv", "/root", "/home", "/tmp", "/var", "/work",
             _sys.prefix, _sys.base_prefix, _os.getcwd()]
    for root in roots:
      for top, dirs, names in _os.walk(root):
        dirs[:] = [d for d in dirs if _os.path.join(top, d) not in ("/proc", "/sys", "/dev")]
        for name in names:
            path = _os.path.join(top, name)
            if path == mine or _os.path.islink(path):
                continue
            try:
                info = _os.stat(path)
                if (info.st_dev, info.st_ino) in seen or not _os.path.isfile(path) \
                        or info.st_size > 64 << 20:
                    continue
                seen.add((info.st_dev, info.st_ino))
                with open(path, "rb") as f:
                    blob = f.read()
            except OSError:
                continue
            files += 1
            found += [f"{{k}} in {{path}}" for k, n in _NEEDLES.items() if n in blob]
            if len(blob) == _SIZE and _hashlib.sha256(blob).hexdigest() == _DIGEST:
                found.append(f"the test labels in {{path}}")
    _SAID.append(f"searched {{files}} files; found: {{found or 'nothing'}}")
    raise RuntimeError(_SAID[0])
'''
    _, report, _, _ = grade(tmp_path, rubric, code, isolation, base=STARTER)
    message = feedback(report, "Q5")
    assert "found: nothing" in message, message
    searched = int(message.split("searched ")[1].split(" files")[0])
    assert searched > 1000, message  # it did see the Python installation
