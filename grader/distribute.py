"""Publishing the assignment: the student bundle and the Gradescope autograder.

``student_bundle``: one folder, ``tensorflow-tutorial/``, with the starter (the
script and its notebook), the loader, the grader, the students' Makefile (the
instructor blocks removed), the students' part of the README,
``docs/assignment.md`` and ``docs/students.md``, the public part of the rubric,
the runtime's requirements only (no test tool), and the reference's outputs on
the public inputs (``grader/expected/``).  No reference code, no hidden check, no
hidden seed, no grading key.

``gradescope_bundle``: ``setup.sh``, ``run_autograder`` and what they need;
the whole rubric, its grading key (``keys.py``: the hidden inputs are derived
from it) and the reference's outputs on every input.  The reference
itself ships only as ``selftest/``: ``setup.sh`` grades it once when
Gradescope builds the image, fails loudly unless it gets full marks, and
deletes it.  ``run_gradescope`` is what ``run_autograder`` calls;
``try_locally`` runs that entry point on a folder laid out like ``/autograder``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import yaml

from . import engine, keys
from .checks import CHECKS
from .outcome import ProbeOutput
from .errors import UngradableError, UsageError
from .files import atomic_path, copy_grader, write_atomic
from .report import clean_line, to_gradescope
from .rubric import Rubric, load_rubric
from .submission_file import find_submission

ROOT = engine.PROJECT_ROOT
STUDENT_README_BEGIN = "<!-- student:begin -->"
STUDENT_README_END = "<!-- student:end -->"
STUDENT_FOLDER = "tensorflow-tutorial"
INSTRUCTOR_BEGIN = "# instructor:begin"
INSTRUCTOR_END = "# instructor:end"
# What a bundle installs: the runtime only (the test tools, requirements-dev.txt, and Ray,
# requirements-ray.txt, stay with the instructor).
RUNTIME_REQUIREMENTS = ("requirements.txt", "requirements-nodeps.txt")
STUDENT_DOCS = ("assignment.md", "students.md")   # docs/ guides the student bundle ships


def public_rubric(path: Path) -> dict:
    """The rubric without its hidden checks, hidden parameters and secret seed."""
    data = yaml.safe_load(path.read_text())
    data["seed"] = data["public_seed"]
    kept = []
    for item in data["questions"]:
        weight = sum(c.get("weight", 1) for c in item["checks"])
        public = [c for c in item["checks"] if c.get("visibility", "public") == "public"]
        share = sum(c.get("weight", 1) for c in public) / weight
        # each public check keeps the points it has in the full rubric
        item["hidden_points"] = round(item["points"] * (1 - share), 6)
        item["points"] = round(item["points"] * share, 6)
        item["checks"] = public
        (item.get("params") or {}).pop("hidden", None)
        if public:
            kept.append(item)
    data["questions"] = kept
    return data


def export_expected(rubric: Rubric, visibilities: tuple[str, ...], folder: Path) -> int:
    """Write the reference's outputs for these checks into ``folder``; returns the task count.

    Tasks none of whose checks compare with the reference get an empty entry:
    nothing of the reference (its parameters, its IMPROVEMENTS text) ships
    that no check needs.
    """
    tasks = engine.plan(rubric, visibilities)
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        results = engine.expected_outputs(rubric, tasks, Path(tmp))
    for t in tasks:
        if not any(CHECKS[c.kind].reference for c in t.item.checks if c.visibility == t.visibility):
            results[t.id] = ProbeOutput("ok")
    folder.mkdir(parents=True, exist_ok=True)
    engine.save_outputs(folder, tasks, results)
    return len(tasks)


def _student_readme() -> str:
    text = (ROOT / "README.md").read_text()
    title = text.splitlines()[0]
    match = re.search(re.escape(STUDENT_README_BEGIN) + r"(.*?)" + re.escape(STUDENT_README_END),
                      text, re.S)
    body = match.group(1).strip() if match else ""
    return f"{title}\n\n{body}\n"


def student_makefile(text: str) -> str:
    """The Makefile without its instructor blocks (``# instructor:begin`` .. ``end``)."""
    kept, inside = [], False
    for line in text.splitlines():
        if line.strip() == INSTRUCTOR_BEGIN:
            inside = True
        elif line.strip() == INSTRUCTOR_END:
            inside = False
        elif not inside:
            kept.append(line)
    if inside:
        raise UngradableError(f"Makefile: {INSTRUCTOR_BEGIN} without {INSTRUCTOR_END}")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).rstrip("\n") + "\n"


# unpacked readable by their owner only (root on Gradescope): never by a sandbox's user
PRIVATE_FILES = frozenset({keys.KEY_NAME})


def _zip_tree(tree: Path, out: Path, prefix: str = "") -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                name = prefix + path.relative_to(tree).as_posix()
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                mode = (0o600 if path.name in PRIVATE_FILES else
                        0o755 if os.access(path, os.X_OK) else 0o644)
                info.external_attr = mode << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, path.read_bytes())


def _copy_common(tree: Path, rubric_data: dict, rubric_path: Path,
                 visibilities: tuple[str, ...]) -> None:
    copy_grader(tree)
    (tree / "starter").mkdir()
    shutil.copy2(engine.LOADER_PATH, tree / "starter" / "mnist_loader.py")
    for name in RUNTIME_REQUIREMENTS:
        shutil.copy2(ROOT / name, tree / name)
    (tree / "rubric.yaml").write_text(
        "# Generated from the instructor's rubric.yaml: edit that one, not this.\n"
        + yaml.safe_dump(rubric_data, sort_keys=False, width=100))
    rubric = load_rubric(rubric_path)
    export_expected(rubric, visibilities, tree / "grader" / "expected")


def student_bundle(out: Path, rubric_path: Path) -> Path:
    """Build dist/student.zip."""
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        tree = Path(tmp) / STUDENT_FOLDER
        tree.mkdir()
        data = public_rubric(rubric_path)
        public_path = Path(tmp) / "rubric.yaml"
        public_path.write_text(yaml.safe_dump(data, sort_keys=False))
        _copy_common(tree, data, rubric_path, ("public",))
        for name in ("tensorflow_tutorial.py", "tensorflow_tutorial.ipynb"):
            shutil.copy2(ROOT / "starter" / name, tree / "starter")
        (tree / "Makefile").write_text(student_makefile((ROOT / "Makefile").read_text()))
        (tree / "README.md").write_text(_student_readme())
        (tree / "docs").mkdir()
        for guide in STUDENT_DOCS:
            shutil.copy2(ROOT / "docs" / guide, tree / "docs" / guide)
        (tree / ".gitignore").write_text(".venv/\n__pycache__/\n.cache/\n")
        _zip_tree(tree, out, prefix=STUDENT_FOLDER + "/")
    return out


SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image.
# It installs Python 3.11 and the pinned dependencies, then grades the bundled
# reference solution (selftest/) and fails the build unless it gets full marks.
set -euo pipefail
cd /autograder/source
chmod 600 grading.key 2>/dev/null || true  # the hidden inputs' secret: root's alone
export DEBIAN_FRONTEND=noninteractive TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0
if ! command -v python3.11 >/dev/null; then
  apt-get update
  apt-get install -y software-properties-common
  add-apt-repository -y ppa:deadsnakes/ppa || true
  apt-get update
  apt-get install -y python3.11 python3.11-venv
fi
apt-get install -y util-linux >/dev/null 2>&1 || true
python3.11 -m venv .venv
.venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
.venv/bin/python -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt

echo "setup.sh: self-test: grading the reference solution with this autograder..."
if .venv/bin/python -m grader check selftest/tensorflow_tutorial.py --checks all \\
     > selftest/report.txt 2>&1; then
  tail -n 1 selftest/report.txt
  rm -rf selftest
  echo "setup.sh: self-test passed: the reference gets full marks."
else
  cat selftest/report.txt >&2
  echo "SETUP FAILED: the reference solution does not get full marks with this autograder" \\
       "(report above). Rebuild the zip with 'make gradescope' and check the rubric." >&2
  exit 1
fi
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: it grades $AUTOGRADER_ROOT/submission
# and writes $AUTOGRADER_ROOT/results/results.json, then exits 0 (a low score is a
# result, not a failure). It exits non-zero only when it wrote no results.json:
# Gradescope then shows "the autograder failed", never a score of 0.
#
#   AUTOGRADER_ROOT    the folder laid out like Gradescope's (default /autograder):
#                      source/ (this zip), submission/, results/
#   AUTOGRADER_PYTHON  the Python to grade with (default $AUTOGRADER_ROOT/source/.venv/bin/python,
#                      which setup.sh creates)
#
# `python -m grader gradescope --local FILE` sets both to try this on a laptop.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
cd "$ROOT/source" || exit 2
PY="${AUTOGRADER_PYTHON:-$ROOT/source/.venv/bin/python}"
export TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0
exec "$PY" -m grader gradescope --root "$ROOT"
"""


def gradescope_bundle(out: Path, rubric_path: Path) -> Path:
    """Build dist/gradescope_autograder.zip (upload it as the autograder)."""
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        tree = Path(tmp) / "autograder"
        tree.mkdir()
        data = yaml.safe_load(rubric_path.read_text())
        _copy_common(tree, data, rubric_path, ("public", "hidden"))
        key = keys.key_path(rubric_path)
        if key.is_file():  # made by planning the hidden checks, if the rubric has any
            shutil.copyfile(key, tree / keys.KEY_NAME)
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            (tree / name).write_text(text)
            os.chmod(tree / name, 0o755)
        (tree / "selftest").mkdir()
        shutil.copy2(engine.REFERENCE_PATH, tree / "selftest" / "tensorflow_tutorial.py")
        _zip_tree(tree, out)
    return out


def _write_results(path: Path, results: dict) -> None:
    write_atomic(path, json.dumps(results, indent=2) + "\n")


def run_gradescope(root: Path, rubric_path: Path) -> int:
    """Grade root/submission and write root/results/results.json; 0 once it is written.

    A grader fault (GraderError) writes nothing and propagates: exit 2, and
    Gradescope reports the autograder's failure rather than a zero.
    """
    started = time.monotonic()
    rubric = load_rubric(rubric_path)
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    submission = find_submission(root / "submission", rubric.submission_name)
    if submission is None:
        found = sorted(clean_line(p.name) for p in (root / "submission").rglob("*")
                       if p.is_file()) if (root / "submission").is_dir() else []
        message = (f"No {rubric.submission_name} found in your submission "
                   f"(files: {', '.join(found[:10]) or 'none'}). Upload {rubric.submission_name}.")
        _write_results(results_path, {"score": 0.0, "output": message, "visibility": "visible",
                                      "execution_time": int(time.monotonic() - started),
                                      "tests": []})
        return 0
    report = engine.grade(submission, rubric, ("public", "hidden"), isolation="auto")
    _write_results(results_path, to_gradescope(report, rubric.gradescope_hidden_visibility,
                                               execution_time=time.monotonic() - started))
    return 0


def try_locally(submission: Path, rubric_path: Path, zip_path: Path | None = None,
                keep: Path | None = None) -> tuple[int, dict, Path]:
    """Run the autograder zip's own ``run_autograder`` on ``submission`` (a file or a
    folder), in a folder laid out like Gradescope's ``/autograder``.

    Returns (its exit status, results.json, the folder).  Without ``zip_path`` the
    zip is built from this repository first, as ``make gradescope`` would.
    """
    if not submission.exists():
        raise UsageError(f"{submission}: no such file or folder")
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise UsageError(f"{keep}: not an empty folder")
    scratch = None
    if keep is None:
        scratch = tempfile.mkdtemp(prefix="autograder-try-")
        keep = Path(scratch)
    root = keep / "autograder"
    try:
        if zip_path is None:
            zip_path = gradescope_bundle(keep / "gradescope_autograder.zip", rubric_path)
        elif not zipfile.is_zipfile(zip_path):
            raise UsageError(f"{zip_path}: not a zip file")
        (root / "source").mkdir(parents=True)
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(root / "source")
        for name in ("run_autograder", "setup.sh"):
            if (root / "source" / name).exists():
                os.chmod(root / "source" / name, 0o755)
        (root / "results").mkdir()
        if submission.is_dir():
            shutil.copytree(submission, root / "submission")
        else:
            (root / "submission").mkdir()
            shutil.copy2(submission, root / "submission" / submission.name)
        env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
        run = subprocess.run([str(root / "source" / "run_autograder")], cwd=root / "source",
                             env=env, stdout=sys.stderr, stderr=None)
        results_file = root / "results" / "results.json"
        if not results_file.is_file():
            raise UngradableError(f"run_autograder exited {run.returncode} and wrote no "
                                  "results.json: on Gradescope this is 'the autograder failed'")
        results = json.loads(results_file.read_text())
        return run.returncode, results, root
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def describe_results(results: dict) -> str:
    """results.json as a student would read it on Gradescope, for the terminal."""
    tests = results.get("tests", [])
    lines = [f"results.json: score {results.get('score')}, "
             f"execution_time {results.get('execution_time', '-')} s, {len(tests)} tests"]
    if results.get("output"):
        lines += ["", str(results["output"])]
    for t in tests:
        lines += ["", f"{t.get('number', ''):>5} {t.get('name', '')}: {t.get('score')}/"
                      f"{t.get('max_score')}  [{t.get('visibility', 'visible')}]"]
        lines += ["      " + line for line in str(t.get("output", "")).splitlines()]
    return "\n".join(lines) + "\n"
