"""grader/batch/, grader/notebook.py and grader/summary.py.

The end-to-end tests run ``python -m grader batch`` and ``check`` as
subprocesses on a small class; this process never imports TensorFlow.  The
other tests exercise discovery, notebook extraction and rendering directly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import IN_PROCESS, at_import, grader_main
from grader import batch, engine, summary
from grader.errors import UsageError
from grader.notebook import NotebookError, extract
from grader.outcome import RowStatus
from grader.rubric import load_rubric

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"
STARTER = ROOT / "starter" / "tensorflow_tutorial.py"
RUBRIC = load_rubric(ROOT / "rubric.yaml")
ITEMS = ["Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9", "Q10", "Q11", "model"]
EXTRA = ["raw", "penalty", "hours_late", "pending", "overrides", "review", "flags"]
HEADER = ["student", "user_id", "late", "source", *ITEMS, "total", "status", *EXTRA]
COST_MEAN = "return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=Z2))"
HANGS = at_import("import time\ntime.sleep(3600)\n")
HOSTILE = """import os, sys
if os.fork() == 0:          # a daemon that should not outlive its grade
    os.setsid()
    import time
    time.sleep(3600)
sys.stdout.write("x" * 5_000_000)
os._exit(3)
"""
HOSTILE = at_import(HOSTILE)   # run as written, not skipped as a tutorial's top level


# ---------------------------------------------------------------- helpers

def run_grader(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def short_rubric(tmp_path: Path) -> Path:
    """rubric.yaml with a short import budget, so that a hanging submission costs little."""
    data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
    data["limits"]["import_seconds"] = 4
    path = tmp_path / "rubric-short.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def notebook_from(source: str, path: Path) -> Path:
    """A notebook of ``source`` split into cells, with magics and shell escapes around."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# TensorFlow tutorial"))
    nb.cells.append(nbformat.v4.new_code_cell("!pip install tensorflow\n%matplotlib inline"))
    head, *functions = source.split("\ndef ")
    nb.cells.append(nbformat.v4.new_code_cell(head))
    nb.cells += [nbformat.v4.new_code_cell("def " + f) for f in functions]
    nb.cells.append(nbformat.v4.new_code_cell("%%time\nlisting = !ls\nsteps = 3\nlen?"))
    nb.cells.append(nbformat.v4.new_code_cell("%%bash\necho not python"))
    nbformat.write(nb, str(path))
    return path


def read_gradebook(out: Path) -> list[dict]:
    text = (out / "gradebook.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == HEADER
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def check_json(path: Path, rubric: Path) -> dict:
    """``grader check PATH --format json``'s report (see conftest.grader_main)."""
    argv = ["check", str(path), "--format", "json", "--rubric", str(rubric)]
    if IN_PROCESS:
        code, stdout, stderr = grader_main(argv)
    else:
        proc = run_grader(*argv)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    assert code in (0, 1), stderr
    return json.loads(stdout)


def make_class(src: Path) -> None:
    src.mkdir()
    reference = REFERENCE.read_text()
    (src / "alice.py").write_text(reference)
    (src / "bob.py").write_bytes(STARTER.read_bytes())
    assert reference.count(COST_MEAN) == 1
    (src / "carl.py").write_text(reference.replace(COST_MEAN, COST_MEAN.replace("mean", "sum")))
    erin = notebook_from(reference, src / "erin.ipynb")
    nb = nbformat.read(str(erin), as_version=4)   # the tutorial run at top level, as in Jupyter
    nb.cells.append(nbformat.v4.new_code_cell(
        "mnist = load_dataset()\nX, Y = create_placeholders()\nparameters = initialize_parameters()"
        "\nfor step in range(10**9):\n    pass\nprint(mnist.train.num_examples)"))
    nbformat.write(nb, str(erin))
    (src / "gil.ipynb").write_text('{"cells": [')   # a broken notebook: the student's error
    (src / "ivan.py").write_text("import numpy\nfrom numpy import no_such_name_for_grading\n")
    (src / "hank.py").write_text(HANGS)
    (src / "mallory.py").write_text(HOSTILE)
    (src / "notes.txt").write_text("I could not finish, sorry.\n")
    (src / ".DS_Store").write_bytes(b"\0\1")


# ------------------------------------------------------------ end to end

def test_batch_grades_a_class_like_check_and_resumes(tmp_path):
    rubric = short_rubric(tmp_path)
    src, out = tmp_path / "class", tmp_path / "out"
    make_class(src)

    proc = run_grader("batch", src, "--out", out, "--jobs", 2, "--rubric", rubric)
    assert proc.returncode == 0, proc.stderr
    rows = {r["student"]: r for r in read_gradebook(out)}
    assert sorted(rows) == ["alice", "bob", "carl", "erin", "gil", "hank", "ivan", "mallory",
                            "notes"]
    status = {name: r["status"] for name, r in rows.items()}
    assert status == {"alice": "graded", "bob": "graded", "carl": "graded", "erin": "graded",
                      "gil": "import-error", "hank": "timeout", "ivan": "import-error",
                      "mallory": "crashed", "notes": "skipped-not-python"}
    assert {r["source"] for r in rows.values()} >= {"alice.py", "erin.ipynb", "notes.txt"}
    assert all(r["user_id"] == "" and r["late"] == "false" for r in rows.values())
    assert not (out / ".batch.lock").exists()
    ivan = (out / "reports" / "ivan.txt").read_text()
    assert ivan.count("cannot import name 'no_such_name_for_grading'") == 1
    assert "line 2" in ivan and "from numpy import no_such_name_for_grading" in ivan
    erin_report = (out / "reports" / "erin.txt").read_text()
    assert re.search(r"a loop at top level \(1\):\n +code cell \d+, lines? [\d-]+: "
                     r"for step in range\(10\*\*9\):", erin_report), erin_report
    assert rows["notes"]["total"] == "" and rows["notes"]["Q2"] == ""
    assert float(rows["alice"]["total"]) == 100 and float(rows["erin"]["total"]) == 100
    assert float(rows["carl"]["Q5"]) < 10 and float(rows["bob"]["total"]) == 0
    assert "not a .py or .ipynb" in (out / "reports" / "notes.txt").read_text()
    assert "timed out" in (out / "reports" / "hank.txt").read_text()
    assert "not a readable Jupyter notebook" in (out / "reports" / "gil.txt").read_text()

    graded = ["alice", "bob", "carl", "erin", "gil", "hank", "ivan", "mallory"]
    sources = {name: next(src.glob(f"{name}.*")) for name in graded}
    for name in graded:
        assert (out / "reports" / f"{name}.txt").read_text().startswith("Grading ")
        assert (out / "submissions" / f"{name}{'.ipynb' if name == 'gil' else '.py'}").is_file()
    erin = (out / "submissions" / "erin.py").read_text()
    assert "!pip" not in erin.replace("# removed: !pip", "") and "%%bash" in erin

    # the same scores as `check` on the same file
    with ThreadPoolExecutor(1 if IN_PROCESS else 2) as pool:   # one main() at a time
        checked = dict(zip(graded, pool.map(lambda n: check_json(sources[n], rubric), graded)))
    for name in graded:
        report = json.loads((out / "reports" / f"{name}.json").read_text())
        assert [q["id"] for q in report["questions"]] == ITEMS
        assert report["total"] == checked[name]["total"], name
        for q, c in zip(report["questions"], checked[name]["questions"]):
            assert q["score"] == c["score"] and float(rows[name][q["id"]]) == pytest.approx(
                q["score"], abs=1e-6), (name, q["id"])

    result = json.loads((out / "summary.json").read_text())
    assert result["counts"] == {"crashed": 1, "graded": 4, "import-error": 2,
                                "skipped-not-python": 1, "timeout": 1}
    assert {i["id"] for i in result["items"]} == set(ITEMS) | {"total"}
    q5 = next(i for i in result["items"] if i["id"] == "Q5")
    assert q5["common_mistakes"] and all(m["students"] == ["carl"] and m["percent"] == 12.5
                                         for m in q5["common_mistakes"])
    assert any(i["path"] == ".DS_Store" for i in result["ignored"])
    page = (out / "summary.html").read_text()
    assert f"src='{summary.PNG_NAME}'" in page
    assert (out / summary.PNG_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a rerun regrades nothing and is quick
    before = (out / "state.json").read_text()
    proc = run_grader("batch", src, "--out", out, "--rubric", rubric)
    assert proc.returncode == 0, proc.stderr
    assert "0 to grade, 8 unchanged" in proc.stderr, proc.stderr
    assert json.loads((out / "state.json").read_text())["students"] == \
        json.loads(before)["students"]


def test_batch_over_a_zip_of_student_folders_resumes_and_force_regrades(tmp_path):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("class/dave/tensorflow_tutorial.py", STARTER.read_text())
        zf.writestr("class/dave/mnist_loader.py", "# provided\n")
        zf.writestr("class/fay/report.pdf", "%PDF-1.4\n")
        zf.writestr("../escape.py", "print('outside')\n")
    out = tmp_path / "out"
    proc = run_grader("batch", archive, "--out", out, "--jobs", 1)
    assert proc.returncode == 0, proc.stderr
    rows = {r["student"]: r for r in read_gradebook(out)}
    assert rows["dave"]["status"] == "graded" and rows["dave"]["total"] == "0"
    assert rows["fay"]["status"] == "skipped-not-python"
    ignored = json.loads((out / "summary.json").read_text())["ignored"]
    assert any("outside" in i["reason"] for i in ignored)
    assert not (tmp_path / "escape.py").exists()
    first = json.loads((out / "state.json").read_text())["students"]["dave"]

    proc = run_grader("batch", archive, "--out", out)
    assert "0 to grade, 1 unchanged" in proc.stderr
    proc = run_grader("batch", archive, "--out", out, "--force")
    assert proc.returncode == 0 and "1 to grade" in proc.stderr, proc.stderr
    again = json.loads((out / "state.json").read_text())["students"]["dave"]
    assert again["key"] == first["key"] and again["graded_at"] >= first["graded_at"]
    graded_copy = (out / "submissions" / "dave.py").stat().st_mtime
    assert (out / "reports" / "dave.json").stat().st_mtime > graded_copy


def test_a_rubric_that_does_not_validate_stops_the_batch_before_grading(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\n")
    src = tmp_path / "class"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    proc = run_grader("batch", src, "--out", tmp_path / "out", "--rubric", bad)
    assert proc.returncode == 2 and "ungradable" in proc.stderr
    assert not (tmp_path / "out" / "gradebook.csv").exists()


# ---------------------------------------------------------------- discovery

def names(found) -> dict:
    return {s.student: (s.source, s.status or "") for s in found.submissions}


def test_loose_files_folders_and_collisions(tmp_path):
    (tmp_path / "Zoë Smith.py").write_text("x = 1\n")
    (tmp_path / "Zoe_Smith.ipynb").write_text("{}")
    (tmp_path / "mnist_loader.py").write_text("")
    (tmp_path / "=cmd.py").write_text("")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "tensorflow_tutorial.py").write_text("")
    (tmp_path / "ann" / "scratch.py").write_text("")
    (tmp_path / "ben").mkdir()
    (tmp_path / "ben" / "a.py").write_text("")
    (tmp_path / "ben" / "b.py").write_text("")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "sub").mkdir()
    (tmp_path / "cat" / "sub" / "tensorflow_tutorial.ipynb").write_text("{}")
    (tmp_path / "dan").mkdir()
    found = batch.discover(tmp_path, RUBRIC)
    assert found.layout == "files+folders"
    zoes = sorted(n for n in names(found) if n.startswith("Zoe_Smith"))
    assert len(zoes) == 2 and all(n.startswith("Zoe_Smith+") for n in zoes)
    assert {names(found)[n][0] for n in zoes} == {"Zoe_Smith.ipynb", "Zoë Smith.py"}
    assert {k: v for k, v in names(found).items() if k not in zoes} == {
        "cmd": ("=cmd.py", ""),
        "ann": ("ann/tensorflow_tutorial.py", ""), "ben": ("ben/", "skipped-ambiguous"),
        "cat": ("cat/sub/tensorflow_tutorial.ipynb", ""), "dan": ("dan/", "skipped-no-submission"),
    }
    assert {"path": "mnist_loader.py", "reason": "a file provided with the assignment"} in found.ignored


def test_gradescope_export(tmp_path):
    root = tmp_path / "assignment_1_export"
    (root / "submission_11").mkdir(parents=True)
    (root / "submission_11" / "tensorflow_tutorial.py").write_text("")
    (root / "submission_12").mkdir()
    (root / "submission_12" / "answers.docx").write_text("")
    (root / "submission_metadata.yml").write_text(
        "submission_11:\n  :submitters:\n  - :name: Ada Lovelace\n    :sid: '42'\n"
        "    :email: ada@example.edu\n  :score: 0.0\n"
        "submission_12:\n  :submitters:\n  - :name: Alan Turing\n    :sid: '7'\n")
    found = batch.discover(tmp_path, RUBRIC)
    assert found.layout == "gradescope"
    assert names(found) == {"Ada_Lovelace+42": ("submission_11/tensorflow_tutorial.py", ""),
                            "Alan_Turing+7": ("submission_12/", "skipped-not-python")}
    assert found.submissions[0].info == {"name": "Ada Lovelace", "submission": "submission_11",
                                         "sid": "42", "email": "ada@example.edu",
                                         "user_id": "42", "late": False}


def test_canvas_export(tmp_path):
    for name in ("lovelaceada_101_5001_tensorflow_tutorial.py",
                 "lovelaceada_101_5001_mnist_loader.py",
                 "turingalan_LATE_102_5002_tensorflow_tutorial-1.ipynb",
                 "hopper_103_5003_essay.pdf"):
        (tmp_path / name).write_text("{}")
    found = batch.discover(tmp_path, RUBRIC)
    assert found.layout == "canvas"
    assert names(found) == {
        "hopper+103": ("hopper_103_*", "skipped-not-python"),
        "lovelaceada+101": ("lovelaceada_101_5001_tensorflow_tutorial.py", ""),
        "turingalan+102": ("turingalan_LATE_102_5002_tensorflow_tutorial-1.ipynb", "")}
    info = {s.student: s.info for s in found.submissions}
    assert info["turingalan+102"]["late"] is True and info["lovelaceada+101"]["late"] is False
    assert info["lovelaceada+101"]["user_id"] == "101"


def test_zip_extraction_refuses_escapes(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/x.py", "x = 1\n")
        zf.writestr("../evil.py", "")
        zf.writestr("/abs.py", "")
    dest = tmp_path / "dest"
    dest.mkdir()
    left_out = batch.extract_zip(archive, dest)
    assert (dest / "ok" / "x.py").read_text() == "x = 1\n"
    assert not (tmp_path / "evil.py").exists()
    assert {i["path"] for i in left_out} >= {"../evil.py"}


def test_the_output_folder_inside_src_is_not_a_student(tmp_path):
    (tmp_path / "a.py").write_text("")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tensorflow_tutorial.py").write_text("")
    found = batch.discover(tmp_path, RUBRIC, exclude=(tmp_path / "out").resolve())
    assert names(found) == {"a": ("a.py", "")}
    (tmp_path / "results" / "out").mkdir(parents=True)
    found = batch.discover(tmp_path, RUBRIC, exclude=(tmp_path / "results" / "out").resolve())
    assert "results" not in names(found)
    assert {"path": "results", "reason": "holds the output folder (--out)"} in found.ignored


# ---------------------------------------------------------------- notebooks

def test_notebook_cells_become_python_without_ipython_syntax(tmp_path):
    path = notebook_from("from __future__ import annotations\nimport os\n\ndef f():\n    return 1\n",
                         tmp_path / "n.ipynb")
    text = extract(path)
    compile(text, "n.py", "exec")
    lines = text.splitlines()
    assert lines[2] == "from __future__ import annotations"
    code = [line.split("#")[0].rstrip() for line in lines]
    assert not any(c.lstrip().startswith(("!", "%")) or "= !" in c or c.endswith("?") for c in code)
    assert "steps = 3" in lines and "# echo not python" in lines


def test_a_cell_that_compiles_is_kept_as_it_is(tmp_path):
    source = 'x = """\n!not a shell escape\n%not a magic\n"""\ny = (10\n     % 3)\n'
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbformat.write(nb, str(tmp_path / "n.ipynb"))
    assert source.rstrip("\n") in extract(tmp_path / "n.ipynb")


def test_an_unreadable_notebook_is_a_notebook_error(tmp_path):
    (tmp_path / "n.ipynb").write_text("{not json")
    with pytest.raises(NotebookError, match="not a readable Jupyter notebook"):
        extract(tmp_path / "n.ipynb")


# ---------------------------------------------------------------- rendering

def test_gradebook_rows_and_number_format():
    students = {"b": {"status": "graded", "scores": {"Q2": 5.0, "Q3": 20 / 3}, "total": 35 / 3},
                "a": {"status": "ungradable", "scores": {}, "total": None, "reason": "x"}}
    students["b"]["info"] = {"user_id": "101", "late": True}
    students["b"]["source"] = "b_LATE_101_9_tensorflow_tutorial.py"
    students["b"].update(raw=35 / 3 + 1, penalty=1.0, hours_late=25.5, pending=["Q4"],
                         overrides=["Q3"], flags=["=copied", "late"])
    text = summary.gradebook_csv(["Q2", "Q3"], students)
    assert text == ("student,user_id,late,source,Q2,Q3,total,status,raw,penalty,hours_late,"
                    "pending,overrides,review,flags\n"
                    "a,,false,,,,,ungradable,,,,,,,\n"
                    "b,101,true,b_LATE_101_9_tensorflow_tutorial.py,5,6.7,11.7,graded,12.7,1,25.5,"
                    "Q4,Q3,,'=copied; late\n")   # numbers as the report shows them


def test_the_resume_key_changes_with_the_rubric(tmp_path):
    other = tmp_path / "r.yaml"
    data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
    data["seed"] += 1
    other.write_text(yaml.safe_dump(data))
    vis = ("public", "hidden")
    key = batch.context_digest(RUBRIC, vis, "auto")
    assert key == batch.context_digest(RUBRIC, vis, "auto")
    assert key != batch.context_digest(load_rubric(other), vis, "auto")
    assert key != batch.context_digest(RUBRIC, ("public",), "auto")


def test_progress_prints_plain_lines_off_a_terminal():
    stream = io.StringIO()
    progress = batch.Progress(2, 1, stream)
    progress.finished("ann", {"status": "graded", "total": 87.5, "max_total": 100, "seconds": 4.2})
    progress.finished("bob", {"status": "ungradable", "reason": "the sandbox cannot start",
                              "seconds": 0.1})
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/2] ann: graded, 87.5/100 (4.2 s, ETA ")
    assert lines[1].startswith("[2/2] bob: ungradable, the sandbox cannot start")
    progress = batch.Progress(1, 1, stream := io.StringIO())
    progress.finished("cy", {"status": "graded", "total": None, "raw": 95, "pending": ["Q11"],
                             "max_total": 100, "seconds": 1.0})
    assert stream.getvalue().startswith("[1/1] cy: graded, 95/100 so far, Q11 pending")


def test_a_grader_fault_on_one_submission_is_ungradable_not_zero(tmp_path, monkeypatch):
    from grader.errors import UngradableError
    from grader.report import Report

    def fake_grade(path, rubric, visibilities, isolation="auto", **_):
        if path.stem == "a":
            raise UngradableError("the sandbox cannot start: no free uid")
        if path.stem == "b":
            raise RuntimeError("a bug")
        return Report(str(path), 0.0, 100.0, (), "full", "all", 100.0, "x", "y")

    monkeypatch.setattr(engine, "grade", fake_grade)
    out = tmp_path / "out"
    output = batch.Output(out, RUBRIC, "ctx")
    todo = []
    for name in ("a", "b", "c"):
        path = tmp_path / f"{name}.py"
        path.write_text("")
        todo.append((batch.Submission(name, f"{name}.py", path), "key-" + name, path))
    assert batch.grade_all(todo, output, RUBRIC, ("public",), "basic", 2) is False
    rows = {r["student"]: r for r in read_gradebook_with(out, [i.id for i in RUBRIC.items])}
    assert rows["a"]["status"] == rows["b"]["status"] == "ungradable"
    assert rows["a"]["total"] == "" and rows["c"]["total"] == "0"
    assert "no free uid" in output.students["a"]["reason"]
    assert "internal grader error: RuntimeError" in output.students["b"]["reason"]
    assert "problem on the grader's side" in (out / "reports" / "a.txt").read_text()
    assert not output.reusable("a", "key-a") and output.reusable("c", "key-c")

    saved = json.loads((out / "state.json").read_text())     # statuses saved as text
    saved["students"]["d"] = dict(saved["students"]["c"], status="graded-by-hand")
    (out / "state.json").write_text(json.dumps(saved))
    (out / "reports" / "d.json").write_text("{}")
    again = batch.Output(out, RUBRIC, "ctx")
    assert again.students["c"]["status"] is RowStatus.GRADED and again.reusable("c", "key-c")
    assert not again.reusable("d", "key-c") and "d" not in again.students   # unknown: regraded
    again.forget({"a", "b", "c"})
    assert not (out / "reports" / "d.json").exists()


def read_gradebook_with(out: Path, ids: list[str]) -> list[dict]:
    rows = list(csv.reader(io.StringIO((out / "gradebook.csv").read_text())))
    assert rows[0] == ["student", "user_id", "late", "source", *ids, "total", "status", *EXTRA]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


# ------------------------------------------------------- identity and the LMS

def test_row_names_never_collide_with_another_students_name(tmp_path):
    for name in ("Jose.py", "Jose-2.py", "jose.ipynb", "José.py", "Jose+1.py"):
        (tmp_path / name).write_text("x = 1\n")
    found = batch.discover(tmp_path, RUBRIC)
    rows = {s.student: s.source for s in found.submissions}
    assert len(rows) == 5 and len({n.lower() for n in rows}) == 5
    assert rows["Jose-2"] == "Jose-2.py"           # a real name keeps its own row
    plain = {batch.safe_name(Path(source).stem) for source in rows.values()}
    for name, source in rows.items():              # a suffixed name is nobody's plain name
        assert name == batch.safe_name(Path(source).stem) or name not in plain
    again = batch.discover(tmp_path, RUBRIC)        # stable, whoever else is in the class
    (tmp_path / "Jose-2.py").unlink()
    fewer = {s.source: s.student for s in batch.discover(tmp_path, RUBRIC).submissions}
    assert all(fewer[s.source] == s.student for s in again.submissions if s.source in fewer)


def test_two_canvas_students_with_the_same_name_get_their_own_rows(tmp_path):
    for name in ("smithjo_101_1_tensorflow_tutorial.py", "smithjo_LATE_202_2_tensorflow_tutorial.py"):
        (tmp_path / name).write_text("x = 1\n")
    found = batch.discover(tmp_path, RUBRIC)
    assert {s.student: (s.info["user_id"], s.info["late"]) for s in found.submissions} == {
        "smithjo+101": ("101", False), "smithjo+202": ("202", True)}


def fake_report(path, import_error=""):
    from grader.report import CheckResult, QuestionResult, Report
    questions = []
    for item in RUBRIC.items:
        failed = item.id == "Q5" and "sum" in path.read_text()
        check = CheckResult("c", "k", "failed" if failed or import_error else "passed", item.points,
                            0.0 if failed or import_error else item.points, "public",
                            import_error or "got 37", "did you sum over the batch?" if failed else "")
        questions.append(QuestionResult(item.id, item.title, check.score, item.points,
                                        check.status, "", (check,)))
    return Report(str(path), sum(q.score for q in questions), RUBRIC.max_total, tuple(questions),
                  "full", "all", RUBRIC.max_total, "x", "y", import_error=import_error)


def test_import_errors_canvas_import_and_common_mistakes(tmp_path, monkeypatch):
    def fake_grade(path, rubric, visibilities, isolation="auto", **_):
        text = path.read_text()
        return fake_report(path, "importing your file raised ModuleNotFoundError: No module named "
                                 "'seaborn'" if "seaborn" in text else "")

    monkeypatch.setattr(engine, "grade", fake_grade)
    src = tmp_path / "class"
    src.mkdir()
    files = {"lovelaceada_101_11_tensorflow_tutorial.py": "ok = 1\n",
             "turingalan_LATE_102_12_tensorflow_tutorial.py": "x = 'sum'\n",
             "hopperg_103_13_tensorflow_tutorial.py": "x = 'sum'\n",
             "knuthd_104_14_tensorflow_tutorial.py": "import seaborn\n"}
    for name, text in files.items():
        (src / name).write_text(text)
    found = batch.discover(src, RUBRIC)
    out = tmp_path / "out"
    output = batch.Output(out, RUBRIC, "ctx", lms="canvas")
    todo = [(s, "key-" + s.student, s.path) for s in found.submissions]
    assert batch.grade_all(todo, output, RUBRIC, ("public",), "basic", 1) is False

    rows = {r["student"]: r for r in read_gradebook(out)}
    assert rows["knuthd+104"]["status"] == "import-error" and rows["knuthd+104"]["total"] == "0"
    assert rows["turingalan+102"]["late"] == "true" and rows["lovelaceada+101"]["late"] == "false"
    assert rows["hopperg+103"]["user_id"] == "103"
    assert rows["hopperg+103"]["source"] == "hopperg_103_13_tensorflow_tutorial.py"
    assert output.students["knuthd+104"]["reason"].count("No module named 'seaborn'") == 1
    assert (out / "reports" / "knuthd+104.txt").read_text().count("seaborn") == 1

    canvas = list(csv.reader(io.StringIO((out / "canvas_import.csv").read_text())))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                         RUBRIC.assignment]
    assert canvas[1][0] == "Points Possible" and float(canvas[1][5]) == RUBRIC.max_total
    scores = {r[1]: float(r[5]) for r in canvas[2:]}
    assert scores == {"101": 100.0, "102": 90.0, "103": 90.0, "104": 0.0}

    report = summary.build(RUBRIC, output.students, layout="canvas", ignored=[], source="s",
                           complete=True, timing={})
    q5 = next(i for i in report["items"] if i["id"] == "Q5")
    assert q5["common_mistakes"] == [{"mistake": "did you sum over the batch?", "count": 2,
                                      "percent": 50.0, "students": ["hopperg+103",
                                                                    "turingalan+102"]}]
    page = summary.render_html(report, output.students, RUBRIC)
    assert "did you sum over the batch?" in page and "50%" in page and "hopperg+103" in page
    assert "knuthd+104" in page.split("Files that do not import")[1]


def test_the_batch_lock_leaves_no_file(tmp_path):
    fd = batch.lock(tmp_path)
    try:
        with pytest.raises(UsageError, match="another batch is writing there now"):
            batch.lock(tmp_path)
    finally:
        os.close(fd)
    assert list(tmp_path.iterdir()) == []
    os.close(batch.lock(tmp_path))   # free again


def test_gradescope_and_batch_pick_the_same_file_of_a_folder(tmp_path):
    from grader.distribute import find_submission

    cases = [({"mnist_loader.py": "", "mine.py": ""}, "mine.py"),   # the loader is never it
             ({"a/b/tensorflow_tutorial.py": "", "z/tensorflow_tutorial.py": ""},
              "z/tensorflow_tutorial.py"),                         # the shallowest
             ({".hidden/tensorflow_tutorial.py": "", "x.ipynb": "{}"}, "x.ipynb"),
             ({"tensorflow_tutorial.ipynb": "{}", "helper.py": ""}, "tensorflow_tutorial.ipynb"),
             ({"tensorflow_tutorial-1.py": "", "helper.py": ""}, "tensorflow_tutorial-1.py"),
             ({"a.py": "", "b.py": ""}, None), ({"notes.txt": ""}, None), ({}, None)]
    for n, (files, _) in enumerate(cases):
        (tmp_path / f"case{n}").mkdir()
        for name, text in files.items():
            (tmp_path / f"case{n}" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / f"case{n}" / name).write_text(text)
    rows = {s.student: s for s in batch.discover(tmp_path, RUBRIC).submissions}
    for n, (files, expected) in enumerate(cases):
        folder = tmp_path / f"case{n}"
        got = find_submission(folder, RUBRIC.submission_name)
        assert (got.relative_to(folder).as_posix() if got else None) == expected, files
        row = rows[f"case{n}"].path
        assert (row.relative_to(folder).as_posix() if row else None) == expected, files


def test_outputs_are_replaced_whole_or_not_at_all(tmp_path):
    from grader.files import atomic_path, write_atomic

    target = tmp_path / "gradebook.csv"
    write_atomic(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert target.read_text() == "old\n" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    folder = tmp_path / "cache"
    with atomic_path(folder, directory=True) as tmp:     # a folder, as engine's cache saves one
        (tmp / "x.result").write_text("1")
    with pytest.raises(OSError):                         # someone else saved it first
        with atomic_path(folder, directory=True) as tmp:
            (tmp / "y.result").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "cache", "gradebook.csv"]
    assert [p.name for p in folder.iterdir()] == ["x.result"]
