"""grader/distribute.py: the student bundle and the Gradescope autograder, used for real.

Both zips are built with the CLI, unpacked into empty folders and run there.
To keep the suite fast the unpacked bundle reuses this checkout's .venv
(a symlink) instead of installing TensorFlow again; everything else is what
a student or Gradescope gets.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"
STARTER = ROOT / "starter" / "tensorflow_tutorial.py"
VENV = Path(sys.executable).parent.parent
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")


def build(kind: str, out: Path) -> Path:
    run = subprocess.run([sys.executable, "-m", "grader", "bundle", kind, "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert run.returncode == 0, run.stderr
    return out


def unpack(zip_path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(folder)
    for name in ("run_autograder", "setup.sh"):
        if (folder / name).exists():
            os.chmod(folder / name, 0o755)
    return folder


CONTRACT = ("create_placeholders", "initialize_parameters", "forward_propagation", "compute_cost",
            "compute_accuracy", "create_train_step", "initialize_session", "train", "evaluate")


def answer_lines() -> list[str]:
    """The reference's answers: every code line in the bodies of Q2..Q10, and IMPROVEMENTS."""
    source = REFERENCE.read_text()
    lines = source.splitlines()
    answers = []
    for node in ast.parse(source).body:
        body = []
        if isinstance(node, ast.FunctionDef) and node.name in CONTRACT:
            body = node.body[1:] if ast.get_docstring(node) else node.body
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "IMPROVEMENTS"
                                                   for t in node.targets):
            body = [node]
        for stmt in body:
            for line in lines[stmt.lineno - 1:stmt.end_lineno]:
                text = line.strip()
                if len(text) >= 12 and not text.startswith("#"):
                    answers.append(text)
    return answers


def mutant(tmp_path: Path, old: str, new: str) -> Path:
    text = REFERENCE.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "mutant" / "tensorflow_tutorial.py"
    path.parent.mkdir()
    path.write_text(text.replace(old, new))
    return path


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("student")
    unpacked = unpack(build("student", tmp / "student.zip"), tmp / "unpacked")
    assert [p.name for p in unpacked.iterdir()] == ["tensorflow-tutorial"]   # one folder
    folder = unpacked / "tensorflow-tutorial"
    (folder / ".venv").symlink_to(VENV)
    return folder


def test_the_students_makefile_offers_only_what_students_can_run(student):
    run = subprocess.run(["make", "-s", "help"], cwd=student, capture_output=True, text=True,
                         timeout=60, env=ENV)
    assert run.returncode == 0, run.stderr
    targets = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("make ")]
    assert targets == ["grade", "watch", "run"]
    assert "default: starter/tensorflow_tutorial.py" in run.stdout.splitlines()[2]
    assert "reference" not in run.stdout
    for target in ("test", "bench", "gradescope", "student-bundle", "calibrate", "batch"):
        run = subprocess.run(["make", "-s", "-n", target], cwd=student, capture_output=True,
                             text=True, timeout=60, env=ENV)
        assert run.returncode != 0 and "No rule to make target" in run.stderr, target
    run = subprocess.run(["make", "-s", "-n", "run"], cwd=student, capture_output=True,
                         text=True, timeout=60, env=ENV)
    assert "starter/tensorflow_tutorial.py" in run.stdout


def test_the_student_bundle_holds_nothing_of_the_reference(student):
    files = {p.relative_to(student).as_posix(): p for p in student.rglob("*")
             if p.is_file() and ".venv" not in p.parts}
    assert "starter/tensorflow_tutorial.py" in files and "starter/mnist_loader.py" in files
    assert "starter/tensorflow_tutorial.ipynb" in files
    assert "Makefile" in files and "README.md" in files and "grader/cli.py" in files
    for link in re.findall(r"\]\(([^)#:]+)\)", files["README.md"].read_text()):
        assert link in files, f"the students' README links to {link}, not in the bundle"
    assert not any(name.startswith(("reference/", "tests/", ".ci/", "bench/")) for name in files)
    rubric = yaml.safe_load((student / "rubric.yaml").read_text())
    full = yaml.safe_load((ROOT / "rubric.yaml").read_text())
    assert rubric["seed"] == rubric["public_seed"] == full["public_seed"]
    for item in rubric["questions"]:
        assert all(c.get("visibility", "public") == "public" for c in item["checks"])
        assert "hidden" not in (item.get("params") or {})
    secret = str(full["seed"])
    from grader import keys
    key = keys.load_or_create(ROOT / "rubric.yaml").hex()  # the instructor's, wherever it is
    assert not any(Path(name).name == keys.KEY_NAME for name in files)
    answers = answer_lines()
    assert len(answers) > 20
    for name, path in files.items():
        data = path.read_bytes()
        text = data.decode("utf-8", "replace")
        assert secret not in text, f"{name} holds the hidden seed"
        assert key not in text.lower() and bytes.fromhex(key) not in data, \
            f"{name} holds the grading key"
        leaked = [a for a in answers if a in text]
        assert not leaked, f"{name} holds reference lines: {leaked[:3]}"


def test_make_grade_in_the_bundle_self_checks_public_checks(student, tmp_path):
    solved = tmp_path / "solved" / "tensorflow_tutorial.py"
    solved.parent.mkdir()
    shutil.copyfile(REFERENCE, solved)
    run = subprocess.run(["make", "-s", "grade", f"SUBMISSION={solved}"], cwd=student,
                         capture_output=True, text=True, timeout=300, env=ENV)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "public checks: " in run.stdout and " of 100 points can be checked here" in run.stdout
    assert "Total: " in run.stdout
    run = subprocess.run(["make", "-s", "grade"], cwd=student, capture_output=True, text=True,
                         timeout=300, env=ENV)
    assert run.returncode == 0, run.stderr      # points lost is a grade, not a make error
    assert "Error" not in run.stderr
    assert "Total: 0/" in run.stdout
    q2 = next(line for line in run.stdout.splitlines() if line.strip().startswith("Q2 "))
    assert "not answered yet; expects (X, Y): float32 placeholders" in q2
    run = subprocess.run(["make", "-s", "grade", "SUBMISSION=no/such.py"], cwd=student,
                         capture_output=True, text=True, timeout=300, env=ENV)
    assert run.returncode != 0 and "no/such.py: no such file" in run.stderr   # exit 2 still fails


def test_a_public_check_scores_the_same_in_the_bundle_and_at_grading(student, tmp_path):
    buggy = mutant(tmp_path, "tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(",
                   "tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits_v2(")
    reports = []
    for cwd, python in ((student, student / ".venv" / "bin" / "python"), (ROOT, Path(sys.executable))):
        run = subprocess.run([str(python), "-m", "grader", "check", str(buggy), "--format", "json",
                              "--checks", "public"], cwd=cwd, capture_output=True, text=True,
                             timeout=300, env=ENV)
        assert run.returncode == 1, run.stderr
        reports.append(json.loads(run.stdout))
    bundle, instructor = reports
    assert [q["score"] for q in bundle["questions"]] == [q["score"] for q in instructor["questions"]]
    q5 = next(q for q in bundle["questions"] if q["id"] == "Q5")
    assert q5["score"] < q5["max_score"] and "sum" in json.dumps(q5)
    assert bundle["checks_run"] == "public" and bundle["full_total"] == 100


@pytest.fixture(scope="module")
def autograder(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("gradescope")
    return build("gradescope", tmp / "gradescope_autograder.zip")


def run_autograder(zip_path: Path, root: Path, submission: dict[str, str]) -> tuple[int, dict]:
    source = unpack(zip_path, root / "source")
    (root / "submission").mkdir()
    for name, text in submission.items():
        (root / "submission" / name).write_text(text)
    env = dict(ENV, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    env.pop("GRADER_KEY_FILE", None)  # the zip's own grading key, beside its rubric
    run = subprocess.run([str(source / "run_autograder")], cwd=source, capture_output=True,
                         text=True, timeout=300, env=env)
    results = json.loads((root / "results" / "results.json").read_text())
    return run.returncode, results


def assert_gradescope_schema(results: dict) -> None:
    assert isinstance(results["score"], float)
    for test in results["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output", "visibility"}
        assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
        assert 0 <= test["score"] <= test["max_score"] + 1e-9
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]), abs=1e-3)


def test_the_autograder_zip_has_gradescopes_layout(autograder):
    names = set(zipfile.ZipFile(autograder).namelist())
    assert {"setup.sh", "run_autograder", "rubric.yaml", "grader/__main__.py"} <= names
    from grader import keys  # the instructor's key: the zip's hidden inputs are derived from it
    assert zipfile.ZipFile(autograder).read(keys.KEY_NAME).decode().strip() == \
        keys.key_path(ROOT / "rubric.yaml").read_text().strip()
    assert not any(n.startswith(("reference/", "tests/")) for n in names)
    modes = {i.filename: i.external_attr >> 16 for i in zipfile.ZipFile(autograder).infolist()}
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert modes[keys.KEY_NAME] == 0o600       # unpacked unreadable to a sandbox's user
    assert "chmod 600 grading.key" in zipfile.ZipFile(autograder).read("setup.sh").decode()


def test_gradescope_correct_submission(autograder, tmp_path):
    code, results = run_autograder(autograder, tmp_path / "autograder",
                                   {"tensorflow_tutorial.py": REFERENCE.read_text()})
    assert code == 0
    assert_gradescope_schema(results)
    assert results["score"] == 100.0
    hidden = [t for t in results["tests"] if "hidden" in t["name"]]
    assert hidden and all(t["visibility"] == "after_published" for t in hidden)
    assert "until grades are published" in results["output"]
    numbers = [t["number"] for t in results["tests"]]
    assert len(set(numbers)) == len(numbers) and numbers[:3] == ["1.1", "2.1", "2.2"]
    assert sorted(numbers, key=lambda n: tuple(map(int, n.split(".")))) == numbers
    assert isinstance(results["execution_time"], int) and results["execution_time"] >= 1


def test_a_visible_gradescope_test_never_shows_a_hidden_check(autograder, tmp_path):
    ignores = mutant(tmp_path, "def initialize_parameters(n_hidden=128):",
                     "def initialize_parameters(n_hidden=128):\n    n_hidden = 128")
    code, results = run_autograder(autograder, tmp_path / "autograder",
                                   {"tensorflow_tutorial.py": ignores.read_text()})
    assert code == 0
    q3 = [t for t in results["tests"] if t["name"].startswith("Q3")]
    visible = next(t for t in q3 if t["visibility"] == "visible")
    hidden = next(t for t in q3 if t["visibility"] != "visible")
    assert visible["score"] == visible["max_score"] and hidden["score"] == 0
    assert "48" not in visible["output"] and "n_hidden" not in visible["output"]


def test_setup_sh_fails_loudly_when_the_reference_does_not_get_full_marks(autograder, tmp_path):
    source = unpack(autograder, tmp_path / "source")
    assert (source / "selftest" / "tensorflow_tutorial.py").read_text() == REFERENCE.read_text()
    script = (source / "setup.sh").read_text()
    selftest = script[script.index('echo "setup.sh: self-test'):]   # past the installs
    (source / ".venv").symlink_to(VENV)
    shutil.copyfile(STARTER, source / "selftest" / "tensorflow_tutorial.py")
    (source / "selftest.sh").write_text("set -euo pipefail\n" + selftest)
    run = subprocess.run(["bash", "selftest.sh"], cwd=source, capture_output=True, text=True,
                         timeout=300, env=ENV)
    assert run.returncode == 1
    assert "SETUP FAILED: the reference solution does not get full marks" in run.stderr
    assert "Total: 0/100" in run.stderr


def test_gradescope_buggy_submission_hides_hidden_expected_values(autograder, tmp_path):
    right = "tf.equal(tf.argmax(Z2, axis=1), tf.argmax(Y, axis=1))"
    assert REFERENCE.read_text().count(right) == 1
    text = REFERENCE.read_text().replace(right, right.replace("axis=1", "axis=0"))
    code, results = run_autograder(autograder, tmp_path / "autograder",
                                   {"tensorflow_tutorial.py": text})
    assert code == 0     # results.json was written: a low score is not a failed autograder
    assert_gradescope_schema(results)
    q6 = [t for t in results["tests"] if t["name"].startswith("Q6")]
    assert all(t["score"] < t["max_score"] for t in q6)
    assert any("axis" in t["output"] for t in q6)
    hidden = next(t for t in q6 if "hidden" in t["name"])
    assert "expected" not in hidden["output"].lower()
    others = [t for t in results["tests"] if not t["name"].startswith("Q6")]
    assert all(t["score"] == t["max_score"] for t in others)  # only Q6 loses points


HOSTILE = '''
import json, os, sys
FAKE = {"score": 100.0, "tests": [{"name": "fake", "score": 100.0, "max_score": 100.0}]}
for path in ("../results/results.json", "/autograder/results/results.json",
             os.path.join(os.environ.get("AUTOGRADER_ROOT", "/nonexistent"), "results", "results.json")):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(FAKE, f)
    except OSError:
        pass
print(json.dumps({"total": 100.0, "max_total": 100.0, "questions": []}))
IMPROVEMENTS = ""
def create_placeholders():
    os._exit(0)
'''


def test_gradescope_hostile_submission_cannot_write_its_score(autograder, tmp_path):
    code, results = run_autograder(autograder, tmp_path / "autograder",
                                   {"tensorflow_tutorial.py": HOSTILE})
    assert code == 0
    assert_gradescope_schema(results)
    assert results["score"] == 0.0
    assert all(t["name"] != "fake" for t in results["tests"])
    q2 = next(t for t in results["tests"] if t["name"].startswith("Q2"))
    assert "exited" in q2["output"]


def test_gradescope_without_the_expected_file(autograder, tmp_path):
    code, results = run_autograder(autograder, tmp_path / "autograder", {"notes.txt": "hello"})
    assert code == 0
    assert results["score"] == 0.0 and "No tensorflow_tutorial.py found" in results["output"]
    assert "notes.txt" in results["output"]
