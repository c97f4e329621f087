"""The notebooks generated from the tutorial scripts, and ``check("Q5")`` in a notebook.

The fast tier checks the generator (one source, same bytes, the same
questions and docstrings as the script), the filter's handling of the
kernel's history and how ``check`` finds its bundle and its source. The
``tf`` tier grades the notebooks and runs them in a real Jupyter kernel
(nbclient and ipykernel, from requirements-notebook.txt).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import grader_main, tutorial_env
from grader import notebook, notebook_gen, selfcheck

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {folder: ROOT / folder / "tensorflow_tutorial.py" for folder in ("starter", "reference")}


def _functions(tree: ast.Module) -> dict[str, str]:
    return {node.name: ast.get_docstring(node) or "" for node in tree.body
            if isinstance(node, ast.FunctionDef)}


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


# ----------------------------------------------------------------- the generator

@pytest.mark.parametrize("folder", sorted(SCRIPTS))
def test_the_committed_notebook_is_what_its_script_generates(folder):
    path, text = notebook_gen.generate(folder, "tensorflow_tutorial")
    assert path.read_text(encoding="utf-8") == text, \
        f"{path.relative_to(ROOT)} is out of date: run python -m grader.notebook_gen"
    assert notebook_gen.generate(folder, "tensorflow_tutorial")[1] == text  # same bytes
    nbformat.validate(nbformat.reads(text, as_version=4))


@pytest.mark.parametrize("folder", sorted(SCRIPTS))
def test_the_notebook_holds_the_scripts_questions_and_docstrings(folder):
    script = ast.parse(SCRIPTS[folder].read_text())
    nb = nbformat.read(SCRIPTS[folder].with_suffix(".ipynb"), as_version=4)
    in_notebook: dict[str, str] = {}
    for source in _code(nb):
        in_notebook.update(_functions(ast.parse(source)))
    expected = {name: doc for name, doc in _functions(script).items() if name != "main"}
    assert {k: in_notebook.get(k) for k in expected} == expected
    headings = re.findall(r"^## (Q\d+)\b", "\n".join(c.source for c in nb.cells
                                                    if c.cell_type == "markdown"), re.M)
    questions = re.findall(r"^# (Q\d+)\b", SCRIPTS[folder].read_text(), re.M)
    assert headings == questions == [f"Q{n}" for n in range(1, 12)]
    assert ast.get_docstring(script).splitlines()[0] in nb.cells[0].source
    # every graded question is followed by its check cell
    assert [s for s in _code(nb) if s.startswith("check(")] == \
        [f'check("Q{n}")' for n in range(2, 12)]


def test_a_script_that_changes_makes_the_notebook_test_fail(tmp_path):
    (tmp_path / "starter").mkdir()
    text = SCRIPTS["starter"].read_text().replace("Average with tf.reduce_mean",
                                                  "Average with tf.math.reduce_mean")
    (tmp_path / "starter" / "tensorflow_tutorial.py").write_text(text)
    _, changed = notebook_gen.generate("starter", "tensorflow_tutorial", root=tmp_path)
    assert changed != SCRIPTS["starter"].with_suffix(".ipynb").read_text()
    assert "tf.math.reduce_mean" in changed


def test_a_script_without_sections_is_refused():
    with pytest.raises(ValueError, match="no '# Qn ----' section"):
        notebook_gen.sections('"""Doc."""\nx = 1\n')


# --------------------------------------------------------- the kernel's history

def test_the_kernels_history_becomes_the_same_script_as_a_notebook_file(tmp_path):
    cells = ["import numpy as np", "def f():\n    return 1", "f()", 'check("Q5")',
             "from grader import check", "import grader", "def f():\n    return 2"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    from_file = notebook.extract(path)
    from_history = notebook.extract_cells(cells)
    assert from_file.split("\n", 1)[1] == from_history.split("\n", 1)[1]  # but the header
    assert "# skipped (self-check): from grader import check" in from_history
    assert "# skipped (self-check): import grader" in from_history
    assert '# skipped (self-check): check("Q5")' in from_history
    namespace: dict = {}
    exec(compile(from_history, "x.py", "exec"), namespace)  # no grader import, no f() call
    assert namespace["f"]() == 2                            # the later definition wins


def test_the_bundle_root_is_found_from_a_subfolder_and_the_package(tmp_path):
    assert selfcheck.bundle_root(ROOT / "starter") == ROOT
    assert selfcheck.bundle_root(ROOT) == ROOT
    assert selfcheck.bundle_root(tmp_path) == ROOT  # else: the bundle this grader is in


def test_outside_ipython_the_only_notebook_of_the_folder_is_graded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = selfcheck.check("Q5")
    assert result.exit_code == 2 and "0 .ipynb files" in result.text
    assert result.text.count("\n") == 1                      # one line, no traceback
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def f():\n    pass")])
    nbformat.write(nb, tmp_path / "mine.ipynb")
    source, label = selfcheck.kernel_source()
    assert label == "mine.ipynb" and "def f():" in source
    nbformat.write(nb, tmp_path / "other.ipynb")
    assert "2 .ipynb files" in selfcheck.check().text


def test_a_question_that_is_not_in_the_rubric_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "mine.ipynb")
    try:
        result = selfcheck.check("Q55")
    finally:
        selfcheck._stop()
    assert result.exit_code == 2
    assert result.text.startswith("usage error: check('Q55'): no such question; try one of Q2")
    assert selfcheck.check(5).text.startswith("check: check(5): name a question")


def test_the_result_shows_as_text_and_escaped_html():
    result = selfcheck.SelfCheck("Q5", "Total: <b>6/6</b>\n", 0)
    assert repr(result) == "Total: <b>6/6</b>" and result.passed
    assert result._repr_html_() == "<pre>Total: &lt;b&gt;6/6&lt;/b&gt;</pre>"


# --------------------------------------------------------------- grading (tf)

@pytest.mark.tf
def test_the_starter_notebook_grades_todo_and_the_reference_notebook_full_marks():
    code, out, _ = grader_main(["check", str(ROOT / "starter" / "tensorflow_tutorial.ipynb"),
                                "--checks", "public"])
    assert code == 1 and "Total: 0/" in out
    rows = [line for line in out.splitlines() if re.match(r"  (Q\d+|model)\s", line)]
    assert len(rows) == 11 and all(" todo " in row for row in rows)
    code, out, _ = grader_main(["check", str(ROOT / "reference" / "tensorflow_tutorial.ipynb"),
                                "--checks", "all"])
    assert code == 0 and "Total: 100/100" in out
    assert re.search(r"^ *self-check \(\d+\):$", out, re.M) and 'check("Q5")' in out
    assert re.search(r"^ *loads data \(\d+\):$", out, re.M) and "load_dataset()" in out


def _kernel(nb, tmp_path: Path, timeout: int = 900):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    env = dict(tutorial_env(tmp_path), TUTORIAL_STEPS="60")
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "starter")}})
    client.execute(env=env)
    return nb


def _shown(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text") or out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _answered_starter() -> nbformat.NotebookNode:
    """The starter notebook with each question's code cell taken from the reference's."""
    starter = nbformat.read(ROOT / "starter" / "tensorflow_tutorial.ipynb", as_version=4)
    reference = nbformat.read(ROOT / "reference" / "tensorflow_tutorial.ipynb", as_version=4)

    def answers(nb) -> dict[str, str]:
        found, heading = {}, None
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                match = re.match(r"## (Q\d+)", cell.source)
                heading = match.group(1) if match else None
            elif heading and heading != "Q1" and heading not in found:
                found[heading] = cell.source
        return found

    theirs = answers(reference)
    heading = None
    for cell in starter.cells:
        if cell.cell_type == "markdown":
            match = re.match(r"## (Q\d+)", cell.source)
            heading = match.group(1) if match else None
        elif heading in theirs:  # the question's own cell, not its check cell after it
            cell.source, heading = theirs[heading], None
    return starter


@pytest.mark.tf
def test_the_starter_notebook_with_the_references_answers_runs_end_to_end(tmp_path):
    nb = _kernel(_answered_starter(), tmp_path)
    try:
        shown = [(c.source, _shown(c)) for c in nb.cells if c.cell_type == "code"]
        checks = [(src, out) for src, out in shown if src.startswith("check(")]
        assert len(checks) == 10
        for src, out in checks:
            assert re.search(r"public checks: [\d.]+ of [\d.]+ points can be checked here", out)
            total = re.search(r"Total: ([\d.]+)/([\d.]+)", out)
            assert total and total.group(1) == total.group(2), (src, out)
        text = "\n".join(out for _, out in shown)
        assert "Trained 60 steps" in text
        assert re.search(r"Test cost = [\d.]+, test accuracy = 0\.\d+", text)
    finally:
        _stop_kernel_servers()


@pytest.mark.tf
def test_check_in_a_kernel_shows_full_marks_then_the_named_mistake(tmp_path):
    reference = nbformat.read(ROOT / "reference" / "tensorflow_tutorial.ipynb", as_version=4)
    cost = next(s for s in _code(reference) if "def compute_cost" in s)
    cells = [c.source for c in reference.cells[:5] if c.cell_type == "code"]
    cells += [cost, 'check("Q5")', cost.replace("tf.reduce_mean", "tf.reduce_sum"),
              'check("Q5")']
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    try:
        _kernel(nb, tmp_path)
    finally:
        _stop_kernel_servers()
    first, second = _shown(nb.cells[-3]), _shown(nb.cells[-1])
    assert "public checks: 6 of 10 points can be checked here" in first
    assert "Q5    Cost      6/6  ok" in first and "Total: 6/6" in first
    assert "2/6  FAIL" in second and "did you sum over the batch instead of averaging" in second


def _stop_kernel_servers() -> None:
    """The kernel has ended: its grading process must have ended with it."""
    import time
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _servers():
        time.sleep(0.2)
    assert not _servers(), "a grading process outlived its kernel"


def _servers() -> list[int]:
    """The grading processes of this checkout's ``check`` now running."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if b"grader.selfcheck_server" in command and (entry / "cwd").resolve() == ROOT:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.tf
def test_the_grading_process_answers_then_asks_for_a_restart_when_the_rubric_changes(tmp_path):
    import json
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text((ROOT / "rubric.yaml").read_text())
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from grader.selfcheck_server import serve; sys.exit(serve(Path(sys.argv[1])))",
         str(tmp_path)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env=tutorial_env(tmp_path))
    try:
        def ask(request: dict) -> dict:
            server.stdin.write((json.dumps(request) + "\n").encode())
            server.stdin.flush()
            return json.loads(server.stdout.readline())

        answer = ask({"source": "x = 1\n", "question": "Q55"})
        assert answer["exit_code"] == 2 and "no such question" in answer["text"]
        answer = ask({"source": "", "question": "Q2", "label": "mine"})
        assert answer["exit_code"] == 1 and answer["max_total"] == 5
        assert "Grading mine" in answer["text"] and "Q2" in answer["text"]
        assert ask({"source": 5})["text"].startswith("usage error: a malformed request")
        rubric.write_text(rubric.read_text() + "\n# changed\n")
        assert ask({"source": "x = 1\n", "question": "Q2"}) == {"restart": True}
        assert server.wait(60) == 0      # and it has ended
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.tf
def test_check_works_in_the_student_bundle_from_its_starter_folder(tmp_path):
    import zipfile
    from grader import distribute
    bundle = distribute.student_bundle(tmp_path / "student.zip", ROOT / "rubric.yaml")
    with zipfile.ZipFile(bundle) as z:
        z.extractall(tmp_path / "unpacked")
    folder = tmp_path / "unpacked" / "tensorflow-tutorial"
    assert (folder / "starter" / "tensorflow_tutorial.ipynb").read_bytes() == \
        (ROOT / "starter" / "tensorflow_tutorial.ipynb").read_bytes()
    starter = nbformat.read(folder / "starter" / "tensorflow_tutorial.ipynb", as_version=4)
    reference = nbformat.read(ROOT / "reference" / "tensorflow_tutorial.ipynb", as_version=4)
    cost = next(s for s in _code(reference) if "def compute_cost" in s)
    cells = [c.source for c in starter.cells[:5] if c.cell_type == "code"]
    cells += [cost, "import grader\ngrader.__file__", 'check("Q5")']
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={
        "metadata": {"path": str(folder / "starter")}})
    client.execute(env=tutorial_env(tmp_path))
    assert str(folder / "grader") in _shown(nb.cells[-2])   # the bundle's grader, not ours
    shown = _shown(nb.cells[-1])
    assert "public checks: 6 of 10 points can be checked here" in shown
    assert "Total: 6/6" in shown
