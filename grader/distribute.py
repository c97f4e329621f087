"""Publishing the assignment: the student bundle and the Gradescope autograder.

``student_bundle``: the starter, the loader, the grader, the Makefile, the
students' part of the README, the public part of the rubric, and the
reference's outputs on the public inputs (``grader/expected/``).  No
reference code, no hidden check, no hidden seed.

``gradescope_bundle``: ``setup.sh``, ``run_autograder`` and what they need;
the whole rubric and the reference's outputs on every input, but not the
reference itself.  ``run_gradescope`` is what ``run_autograder`` calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import yaml

from . import engine
from .outcome import ProbeOutput
from .report import to_gradescope
from .rubric import Rubric, load_rubric

ROOT = engine.PROJECT_ROOT
STUDENT_README_BEGIN = "<!-- student:begin -->"
STUDENT_README_END = "<!-- student:end -->"
SUBMISSION_SUFFIXES = (".py", ".ipynb")


def _grader_files() -> list[Path]:
    return sorted(p for p in engine.PACKAGE_DIR.glob("*.py"))


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


# The check kinds that compare with the reference's outputs (ctx.expected).
REFERENCE_KINDS = frozenset({"allclose", "output_shape"})


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
        if not any(c.kind in REFERENCE_KINDS for c in t.item.checks if c.visibility == t.visibility):
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


def _zip_tree(tree: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(str(path.relative_to(tree)), date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, path.read_bytes())
    os.replace(tmp, out)


def _copy_common(tree: Path, rubric_data: dict, rubric_path: Path,
                 visibilities: tuple[str, ...]) -> None:
    (tree / "grader").mkdir(parents=True)
    for path in _grader_files():
        shutil.copy2(path, tree / "grader" / path.name)
    (tree / "starter").mkdir()
    shutil.copy2(engine.LOADER_PATH, tree / "starter" / "mnist_loader.py")
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        shutil.copy2(ROOT / name, tree / name)
    (tree / "rubric.yaml").write_text(
        "# Generated from the instructor's rubric.yaml: edit that one, not this.\n"
        + yaml.safe_dump(rubric_data, sort_keys=False, width=100))
    rubric = load_rubric(rubric_path)
    export_expected(rubric, visibilities, tree / "grader" / "expected")


def student_bundle(out: Path, rubric_path: Path) -> Path:
    """Build dist/student.zip."""
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        tree = Path(tmp) / "tensorflow-tutorial"
        tree.mkdir()
        data = public_rubric(rubric_path)
        public_path = Path(tmp) / "rubric.yaml"
        public_path.write_text(yaml.safe_dump(data, sort_keys=False))
        _copy_common(tree, data, rubric_path, ("public",))
        shutil.copy2(ROOT / "starter" / "tensorflow_tutorial.py", tree / "starter")
        shutil.copy2(ROOT / "Makefile", tree / "Makefile")
        (tree / "README.md").write_text(_student_readme())
        (tree / ".gitignore").write_text(".venv/\n__pycache__/\n.cache/\n")
        _zip_tree(tree, out)
    return out


SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when the autograder image is built.
set -euo pipefail
cd /autograder/source
export DEBIAN_FRONTEND=noninteractive
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
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes results/results.json.
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
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            (tree / name).write_text(text)
            os.chmod(tree / name, 0o755)
        _zip_tree(tree, out)
    return out


def find_submission(folder: Path, name: str) -> Path | None:
    """The submitted file: the contract's name first, else the only .py or .ipynb."""
    if not folder.is_dir():
        return None
    exact = [p for p in folder.rglob(name) if p.is_file()]
    if exact:
        return sorted(exact)[0]
    stem = Path(name).stem
    notebook = [p for p in folder.rglob(stem + ".ipynb") if p.is_file()]
    if notebook:
        return sorted(notebook)[0]
    candidates = [p for p in folder.rglob("*") if p.is_file() and p.suffix in SUBMISSION_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return candidates[0] if len(candidates) == 1 else None


def run_gradescope(root: Path, rubric_path: Path) -> int:
    """Grade root/submission and write root/results/results.json."""
    rubric = load_rubric(rubric_path)
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    submission = find_submission(root / "submission", rubric.submission_name)
    if submission is None:
        found = sorted(p.name for p in (root / "submission").rglob("*") if p.is_file()) \
            if (root / "submission").is_dir() else []
        message = (f"No {rubric.submission_name} found in your submission "
                   f"(files: {', '.join(found[:10]) or 'none'}). Upload {rubric.submission_name}.")
        results_path.write_text(json.dumps({"score": 0.0, "output": message,
                                            "visibility": "visible", "tests": []}, indent=2))
        return 1
    report = engine.grade(submission, rubric, ("public", "hidden"), isolation="auto")
    results_path.write_text(json.dumps(to_gradescope(report, rubric.gradescope_hidden_visibility),
                                       indent=2) + "\n")
    return report.exit_code
