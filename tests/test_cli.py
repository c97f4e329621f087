"""grader/cli.py: exit codes, one-line errors, formats, notebooks, calibrate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")


def grader(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=ENV)


@pytest.mark.parametrize("args,message", [
    (["check", "no/such/file.py"], "usage error: no/such/file.py: no such file"),
    (["check", "x.py", "--format", "xml"], "usage error: argument --format: invalid choice"),
    (["frobnicate"], "usage error: argument command: invalid choice"),
    (["calibrate", "--seeds", "1"], "usage error: --seeds must be at least 2"),
    (["calibrate", "--item", "Q99"], "usage error: rubric.yaml has no item 'Q99'"),
    (["gradescope", "--zip", "x.zip"], "usage error: --zip and --keep go with --local"),
    (["gradescope", "--local", "no/such.py"], "usage error: no/such.py: no such file or folder"),
    (["check", "starter/tensorflow_tutorial.py", "--only", "Q5,Q99"],
     "usage error: --only: no item 'Q99' in rubric.yaml; the items are Q2, Q3, Q4, Q5, Q6, Q7, "
     "Q8, Q9, Q10, Q11, model"),
])
def test_usage_errors_exit_2_with_one_line(args, message):
    run = grader(*args, timeout=60)
    assert run.returncode == 2
    assert run.stdout == ""
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(message), run.stderr
    assert "Traceback" not in run.stderr


def test_a_notebook_is_graded_as_its_code_cells(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# My answers"),
                      nbformat.v4.new_code_cell("%matplotlib inline\n!pip install numpy"),
                      nbformat.v4.new_code_cell(REFERENCE.read_text())]
    path = tmp_path / "tensorflow_tutorial.ipynb"
    nbformat.write(notebook, str(path))
    run = grader("check", str(path), "--format", "json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["total"] == report["max_total"] == 100
    assert [q["id"] for q in report["questions"]] == \
        [f"Q{n}" for n in range(2, 12)] + ["model"]
    for q in report["questions"]:
        assert set(q) >= {"id", "title", "score", "max_score", "feedback"}


def test_a_broken_notebook_is_the_students_error_not_the_graders(tmp_path):
    path = tmp_path / "tensorflow_tutorial.ipynb"
    path.write_text('{"cells": [')
    run = grader("check", str(path))
    assert run.returncode == 1, run.stderr
    assert "Total: 0/100" in run.stdout
    assert "not a readable Jupyter notebook" in run.stdout


def test_the_gradescope_format_and_output_file(tmp_path):
    out = tmp_path / "results" / "results.json"
    run = grader("check", str(REFERENCE), "--format", "gradescope", "--output", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    results = json.loads(out.read_text())
    assert results["score"] == 100.0
    assert {t["visibility"] for t in results["tests"]} == {"visible", "after_published"}
    assert [t["number"] for t in results["tests"]][:3] == ["1.1", "2.1", "2.2"]


def test_calibrate_reports_the_spread_and_a_threshold(tmp_path):
    import yaml
    data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
    model = next(q for q in data["questions"] if q["id"] == "model")
    model["params"]["public"]["steps"] = 150
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text(yaml.safe_dump(data))
    run = grader("calibrate", "--seeds", "2", "--rubric", str(rubric))
    assert run.returncode in (0, 1), run.stderr
    lines = run.stdout.splitlines()
    assert sum(line.strip().startswith("seed ") for line in lines) == 2
    assert any(line.startswith("accuracy: min ") for line in lines)
    suggested = next(line for line in lines if line.startswith("suggested min_accuracy: "))
    threshold = float(suggested.split()[2])
    low = float(next(line for line in lines if line.startswith("accuracy: min ")).split()[2])
    assert threshold < low  # the reference passes on every seed it tried


def test_a_notebook_as_written_trains_nothing_and_errors_name_the_cell(tmp_path):
    """The tutorial run at top level, as in Jupyter, and one function that raises."""
    reference = REFERENCE.read_text()
    right = "return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=Z2))"
    assert reference.count(right) == 1
    head, _, rest = reference.partition("\ndef compute_cost(")
    cost, _, tail = rest.partition("\ndef ")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(head),
        nbformat.v4.new_code_cell("def compute_cost(" + cost.replace(
            right, "scale = 1\n    raise ValueError('the labels do not match')")),
        nbformat.v4.new_code_cell("def " + tail),
        nbformat.v4.new_code_cell("mnist = load_dataset()\nX, Y = create_placeholders()\n"
                                  "import time\ntime.sleep(3600)\nprint('trained')"),
    ]
    path = tmp_path / "tensorflow_tutorial.ipynb"
    nbformat.write(notebook, str(path))
    run = grader("check", str(path))
    assert run.returncode == 1, run.stderr
    text = run.stdout
    assert "  loads data (1):\n    code cell 4, line 1: mnist = load_dataset()\n" in text
    assert "  calls a function at top level (2):\n    code cell 4, line 2: X, Y = " \
        "create_placeholders()\n    code cell 4, line 4: time.sleep(3600)\n" in text
    cell2 = notebook.cells[1].source.splitlines()
    line = next(i for i, s in enumerate(cell2, start=1) if "raise ValueError" in s)
    assert f"code cell 2, line {line}, in compute_cost: raise ValueError('the labels do not " \
        "match')" in text
    rows = {r.split()[0]: r for r in text.splitlines() if r.startswith("  Q")}
    assert "0/10" in rows["Q5"] and "10/10" in rows["Q4"] and "10/10" in rows["Q6"]
    assert "timed out" not in text


def test_gradescope_local_runs_the_autograder_zips_entry_point(tmp_path):
    keep = tmp_path / "try"
    run = grader("gradescope", "--local", str(REFERENCE), "--keep", str(keep))
    assert run.returncode == 0, run.stderr
    results = json.loads((keep / "autograder" / "results" / "results.json").read_text())
    assert results["score"] == 100.0
    assert (keep / "autograder" / "submission" / "tensorflow_tutorial.py").is_file()
    assert (keep / "autograder" / "source" / "run_autograder").is_file()
    assert run.stdout.startswith("results.json: score 100.0")
    assert "  1.1 Q2 Placeholders X and Y: 5.0/5.0  [visible]" in run.stdout
    assert "run_autograder exited 0" in run.stderr


def test_only_grades_just_those_items_and_the_report_says_so():
    run = grader("check", str(REFERENCE), "--only", "Q5", "--format", "json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert [q["id"] for q in report["questions"]] == ["Q5"]
    assert report["total"] == report["max_total"] == 10 and report["only"] == ["Q5"]
    run = grader("check", str(REFERENCE), "--only", "Q6", "--only", "Q5,Q6", "--progress", "off")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[1] == "graded: Q5, Q6 only"
    assert [line.split()[0] for line in lines if line.startswith("  Q")] == ["Q5", "Q6"]
    assert lines[-1] == "Total: 20/20    (graded: Q5, Q6 only)"


def test_the_students_help_lists_the_students_commands_only():
    from grader import cli
    student = cli._parser(instructor=False)
    text = student.format_help()
    assert "check" in text
    for command in ("calibrate", "bundle", "gradescope", "batch"):
        assert command not in text, text
    # hidden, not gone: Gradescope's autograder (no reference either) still calls one
    assert student.parse_args(["gradescope", "--root", "x"]).command == "gradescope"
    assert "calibrate" in cli._parser(instructor=True).format_help()


def test_the_bundles_install_no_test_tool():
    from grader import distribute
    tools = re.compile(r"^(pytest|pytest-xdist|hypothesis|ray)\b", re.M | re.I)
    for name in distribute.RUNTIME_REQUIREMENTS:
        assert not tools.search((ROOT / name).read_text()), name
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert {"pytest", "pytest-xdist", "hypothesis"} <= set(re.findall(r"^([\w-]+)==", dev, re.M))
    makefile = (ROOT / "Makefile").read_text()
    student = distribute.student_makefile(makefile)
    assert "requirements-dev.txt" in makefile and "requirements-dev.txt" not in student
    for target in ("test", "test-fast", "bench"):   # they install the test tools themselves
        rule = re.search(rf"^{target}:(.*)$", makefile, re.M)
        assert rule and "$(DEV_STAMP)" in rule.group(1), target


def _failing(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(REFERENCE.read_text() + "\n\ndef compute_cost(Z2, Y):\n" + body)
    return path


def _installation_paths() -> list[str]:
    import sysconfig
    import tempfile
    paths = {sys.prefix, os.path.realpath(sys.prefix), str(ROOT), os.path.realpath(ROOT),
             sysconfig.get_paths()["purelib"], os.path.join(tempfile.gettempdir(), "grader-")}
    return sorted(paths) + ["site-packages", ".venv"]


@pytest.mark.parametrize("body,words", [
    ("    raise ValueError('the labels do not match')\n",
     "raise ValueError('the labels do not match')"),
    ("    load_dataset()\n    return None\n", "cannot read"),   # the grading data is hidden
])
def test_reports_name_the_students_file_and_no_path_of_the_grader(tmp_path, body, words):
    path = _failing(tmp_path, "my_solution.py", body)
    run = grader("check", str(path), "--only", "Q5", "--progress", "off")
    assert run.returncode == 1, run.stderr
    details = run.stdout.split("\nDetails\n", 1)[1]
    assert words in details
    assert "my_solution.py, line" in details and "tensorflow_tutorial.py" not in run.stdout
    assert "isolation" not in run.stdout                      # that is --verbose's
    as_json = grader("check", str(path), "--only", "Q5", "--format", "json").stdout
    for text in (details, as_json):
        for where in _installation_paths():
            assert where not in text, (where, text)
    verbose = grader("check", str(path), "--only", "Q5", "--progress", "off", "--verbose")
    assert "isolation: " in verbose.stdout.splitlines()[-1]


def test_the_readme_opens_with_a_quick_start_and_every_guide_link_resolves():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 200
    start = lines.index("## Quick start")
    assert start < 15
    quick = "\n".join(lines[start:lines.index("<!-- student:begin -->")])
    for command in ("make venv", "make grade", "make batch", "make test"):
        assert command in quick, command
    for guide in ("students", "instructors", "security", "design", "assignment"):
        assert f"](docs/{guide}.md)" in quick, guide
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / link).exists(), f"{page.name} links to {link}"


def test_the_student_readme_keeps_the_requirements_and_a_windows_note():
    from grader import distribute
    text = distribute._student_readme()
    assert "Linux or macOS with Python 3.11 and `make`" in " ".join(text.split())
    assert "WSL" in text
    shipped = {f"docs/{name}" for name in distribute.STUDENT_DOCS}
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert link in shipped, link


def test_make_grade_takes_a_path_as_a_goal_and_q_for_one_question(tmp_path):
    notebook = tmp_path / "my_answers.ipynb"
    notebook.write_text("{}")
    run = subprocess.run(["make", "-n", "grade", str(notebook), "Q=Q5"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f'-m grader check "{notebook}" --only "Q5"' in run.stdout
    assert "Nothing to be done" not in run.stdout + run.stderr
    run = subprocess.run(["make", "-n", "grade", "SUBMISSION=my answers.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert '-m grader check "my answers.py"  ' in run.stdout   # a name with spaces: this way


def test_calibrate_steps_prints_each_pipeline_and_the_separation_table():
    run = grader("calibrate", "--steps", "40,20", "--seeds", "2", "--corpus", "tests/corpus",
                 "--only", "weights_zeros,parameters_constants", timeout=600)
    assert run.returncode in (0, 1), run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[-2:] == ["20", "40"]       # the counts, in order
    rows = {line.split("  ")[0]: line.split() for line in lines[1:5]}
    assert set(rows) == {"reference seed 20261128", "reference seed 20261129", "weights_zeros",
                         "parameters_constants"}
    assert rows["parameters_constants"][-2:] == ["error", "error"]  # nothing to train, any steps
    assert float(rows["weights_zeros"][-1]) < 0.2                    # zero weights stay at chance
    table = [line for line in lines if line[:5].strip() in ("20", "40")]
    assert len(table) == 2
    assert "weights_zeros" in table[0] or "parameters_constants" in table[0]  # highest non-learner
    assert lines[-1].startswith(("suggested: steps ", "no step count separates"))


@pytest.mark.parametrize("args,message", [
    (["--steps", "ten"], "--steps 'ten': give step counts separated by commas"),
    (["--steps", "0,10"], "--steps: every step count must be at least 1"),
    (["--corpus", "tests/corpus"], "--corpus and --only go with --steps"),
    (["--steps", "10", "--corpus", "tests/corpus", "--only", "nope"],
     "no corpus fixture named nope"),
])
def test_calibrate_steps_usage_errors(args, message):
    run = grader("calibrate", *args, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == f"usage error: {message}", run.stderr


def test_timings_are_written_only_when_asked(tmp_path):
    out = tmp_path / "timings.jsonl"
    run = subprocess.run([sys.executable, "-m", "grader", "check", str(REFERENCE), "--only", "Q2",
                          "--format", "json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=dict(ENV, GRADER_TIMINGS=str(out)))
    assert run.returncode == 0, run.stderr
    assert "spans" not in run.stdout and "GRADER_TIMINGS" not in run.stdout + run.stderr
    [line] = [json.loads(text) for text in out.read_text().splitlines()]
    assert line["submission"] == "tensorflow_tutorial.py"
    spans = line["spans"]
    assert {"plan", "source", "zygote wait", "main/startup", "main/import", "main/Q2-public",
            "scoring"} <= set(spans)
    assert spans["main/import"][1] <= spans["main/Q2-public"][0] <= spans["main/Q2-public"][1]
    assert spans["scoring"][1] <= line["total"]
