"""grader/batch/similarity.py, fingerprints.py and similarity_page.py: pairs worth a look.

A class is built from the corpus's real solutions (written independently, by
different people) plus planted copies of a few of them, disguised the ways
students disguise copies.  The comparison reads a batch's folder, so most
tests lay one out by hand (state.json, submissions/, reports/) and need no
TensorFlow; one end-to-end test runs ``batch`` itself.
"""

from __future__ import annotations

import ast
import csv
import io
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from conftest import grader_main
from grader.batch import similarity
from grader.batch.fingerprints import MAX_CODE_BYTES, fingerprint_text
from grader.notebook import extract

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "corpus" / "real"
REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"
STARTER = ROOT / "starter" / "tensorflow_tutorial.py"
CONTRACT = {"load_dataset", "create_placeholders", "initialize_parameters", "forward_propagation",
            "compute_cost", "compute_accuracy", "create_train_step", "initialize_session",
            "train", "evaluate", "IMPROVEMENTS", "main"}
# Two tutorials by one author share most of their code: not independent of each other.
SAME_AUTHOR = {"aymericdamien_multilayer_perceptron"}
INDEPENDENT = sorted(p for p in REAL.glob("*.py") if p.stem not in SAME_AUTHOR)

pytestmark = pytest.mark.skipif(not similarity.available(), reason=similarity.MISSING)


# ---------------------------------------------------------------- disguises

def disguise(code: str, reorder: bool = True) -> str:
    """``code`` with every name it binds renamed, its functions in reverse order (``reorder``),
    its comments gone, its layout rewritten and comments of its own added: the usual copy."""
    tree = ast.parse(code)
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            if node.name not in CONTRACT:
                bound |= {a.arg for a in node.args.args}
            bound |= {n.id for n in ast.walk(node)
                      if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    names = {n: f"my_{n}_{i}" for i, n in enumerate(sorted(bound - CONTRACT))}

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node):
            node.id = names.get(node.id, node.id)
            return node

        def visit_arg(self, node):
            node.arg = names.get(node.arg, node.arg)
            return node

    tree = Rename().visit(tree)
    if reorder:
        functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        rest = [n for n in tree.body if n not in functions and n not in imports]
        tree.body = imports + functions[::-1] + rest
    lines = ast.unparse(tree).splitlines()
    return "\n".join(line + ("   # done" if line.strip().startswith("return") else "")
                     for line in lines) + "\n\n\n"


def as_notebook_code(code: str, folder: Path) -> str:
    """``code`` handed in as a notebook (a cell per function), as batch grades it: extracted."""
    nb = nbformat.v4.new_notebook()
    head, *functions = code.split("\ndef ")
    nb.cells = [nbformat.v4.new_markdown_cell("# My tutorial"), nbformat.v4.new_code_cell(head)]
    nb.cells += [nbformat.v4.new_code_cell("def " + f) for f in functions]
    path = folder / "copy.ipynb"
    nbformat.write(nb, str(path))
    return extract(path)


# ---------------------------------------------------------------- a batch's folder

def lay_out(out: Path, codes: dict[str, str], reports: dict[str, dict] | None = None,
            status: str = "graded") -> Path:
    (out / "submissions").mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(exist_ok=True)
    for name, code in codes.items():
        (out / "submissions" / f"{name}.py").write_text(code)
        report = (reports or {}).get(name, {"questions": []})
        (out / "reports" / f"{name}.json").write_text(json.dumps(report))
    (out / "state.json").write_text(json.dumps(
        {"students": {name: {"status": status} for name in codes}}))
    return out


def planted_class(tmp_path: Path) -> tuple[Path, set[tuple[str, str]]]:
    codes = {p.stem: p.read_text() for p in INDEPENDENT}
    codes.update(ref_a=REFERENCE.read_text(), ref_b=REFERENCE.read_text(),
                 starter_a=STARTER.read_text(), starter_b=STARTER.read_text())
    originals = [p.stem for p in INDEPENDENT]
    codes["copy_renamed"] = disguise(codes[originals[0]], reorder=False)
    codes["copy_reordered"] = disguise(codes[originals[3]])
    codes["copy_notebook"] = as_notebook_code(codes[originals[5]], tmp_path)
    assert "reduce_mean" in codes[originals[4]]
    codes["copy_bug"] = codes[originals[4]].replace("reduce_mean", "reduce_sum", 1)
    planted = {tuple(sorted(pair)) for pair in [(originals[0], "copy_renamed"),
                                                 (originals[3], "copy_reordered"),
                                                 (originals[5], "copy_notebook"),
                                                 (originals[4], "copy_bug")]}
    return lay_out(tmp_path / "out", codes), planted


# ---------------------------------------------------------------- code

def test_planted_copies_rank_above_every_independent_pair_and_given_code_is_no_evidence(tmp_path):
    out, planted = planted_class(tmp_path)
    pairs, not_compared = similarity.compare_class(out, similarity.given_code())
    assert not_compared == {}
    scores = {(p.a, p.b): p.score for p in pairs}
    copies = {"copy_renamed", "copy_reordered", "copy_notebook", "copy_bug"}
    independent = [s for (a, b), s in scores.items() if not {a, b} & copies]
    lowest_planted = min(scores.get(pair, 0.0) for pair in planted)
    assert lowest_planted > max(independent, default=0.0)
    assert lowest_planted >= similarity.DEFAULT_THRESHOLD
    assert max(independent) < similarity.DEFAULT_THRESHOLD
    # agreeing with the reference, or handing in the starter, is no evidence at all
    assert scores.get(("ref_a", "ref_b"), 0.0) == 0.0
    assert scores.get(("starter_a", "starter_b"), 0.0) == 0.0
    top = [(p.a, p.b) for p in pairs[:len(planted)]]
    assert set(top) == planted


def test_fingerprints_ignore_names_comments_layout_and_the_given_code():
    code = (REAL / "dy112_mnist_linear_classifier.py").read_text()
    assert set(fingerprint_text(code)) == set(fingerprint_text(disguise(code, reorder=False))) or \
        len(set(fingerprint_text(code)) & set(fingerprint_text(disguise(code, reorder=False)))) \
        >= 0.8 * len(fingerprint_text(code))
    given = fingerprint_text(REFERENCE.read_text())
    assert len(fingerprint_text(REFERENCE.read_text(), given)) == 0


def test_a_passage_the_whole_class_shares_is_common_knowledge_not_evidence(tmp_path):
    shared = (REAL / "dy112_mnist_linear_classifier.py").read_text()
    n = 12
    assert n > similarity.common_cap(n)
    out = lay_out(tmp_path / "out", {f"s{i:02d}": shared for i in range(n)})
    pairs, _ = similarity.compare_class(out, similarity.given_code(), workers=0)
    assert all(p.code == 0.0 for p in pairs)


def test_a_file_too_large_to_compare_is_named_and_the_rest_compared(tmp_path):
    code = (REAL / "dy112_mnist_linear_classifier.py").read_text()
    big = code + "#" * MAX_CODE_BYTES + "\n"
    out = lay_out(tmp_path / "out", {"a": code, "b": disguise(code), "huge": big})
    pairs, not_compared = similarity.compare_class(out, similarity.given_code(), workers=0)
    assert set(not_compared) == {"huge"} and "too large" in not_compared["huge"]
    assert [(p.a, p.b) for p in pairs if p.code > 0.5] == [("a", "b")]


def test_rows_that_were_not_scored_are_not_compared(tmp_path):
    code = (REAL / "dy112_mnist_linear_classifier.py").read_text()
    out = lay_out(tmp_path / "out", {"a": code, "b": code}, status="skipped-not-python")
    assert similarity.compare_class(out, similarity.given_code(), workers=0) == ([], {})


# ---------------------------------------------------------------- behaviour

def _report(*checks: dict) -> dict:
    return {"questions": [{"id": c.pop("item"), "checks": [c]} for c in checks]}


def _failed(item: str, message: str, hint: str = "", **extra) -> dict:
    return {"item": item, "name": f"{item.lower()}_values", "status": "failed",
            "visibility": "public", "message": message, "hint": hint, **extra}


def test_the_same_rare_wrong_results_are_evidence_and_right_answers_are_none(tmp_path):
    code = {f"s{i}": f"x{i} = {i}\n" for i in range(8)}
    wrong = _failed("Q5", "cost is 2.0718 (expected 0.2302)", "did you sum instead of averaging?")
    percent = _failed("Q6", "accuracy is 37.5 (expected 0.375)", "a percentage, not a fraction")
    error = {"item": "Q9", "name": "q9_loop", "status": "error", "failure": "error",
             "visibility": "public", "message": "NameError: name 'btch' is not defined"}
    passed = {"item": "Q4", "name": "q4_values", "status": "passed", "visibility": "public",
              "message": "Z2 matches"}
    reports = {name: _report(dict(passed)) for name in code}
    reports["s1"] = _report(dict(wrong), dict(percent), dict(error), dict(passed))
    reports["s2"] = _report(dict(wrong), dict(percent), dict(error), dict(passed))
    reports["s3"] = _report(dict(percent), dict(passed))
    out = lay_out(tmp_path / "out", code, reports)
    pairs, _ = similarity.compare_class(out, similarity.given_code(), workers=0)
    pairs = [p for p in pairs if p.score >= similarity.DEFAULT_THRESHOLD]
    assert [(p.a, p.b) for p in pairs] == [("s1", "s2")]
    pair = pairs[0]
    assert pair.code == 0.0 and pair.behaviour >= similarity.DEFAULT_THRESHOLD
    assert any("Q5" in e and "no one else in the class" in e for e in pair.evidence)
    assert any("NameError" in e for e in pair.evidence)
    assert any("2 named mistakes" in e for e in pair.evidence)
    assert any("Q6" in e and "1 other student too" in e for e in pair.evidence)


def test_a_mistake_many_make_weighs_less_than_one_two_share(tmp_path):
    code = {f"s{i}": f"x{i} = {i}\n" for i in range(9)}
    wrong = _failed("Q5", "cost is 2.0718 (expected 0.2302)", "did you sum instead of averaging?")
    reports = {name: _report(dict(wrong)) if name in ("s0", "s1", "s2") else {"questions": []}
               for name in code}
    out = lay_out(tmp_path / "out", code, reports)
    three, _ = similarity.compare_class(out, similarity.given_code(), workers=0)
    reports = {name: _report(dict(wrong)) if name in ("s0", "s1") else {"questions": []}
               for name in code}
    out = lay_out(tmp_path / "two", code, reports)
    two, _ = similarity.compare_class(out, similarity.given_code(), workers=0)
    assert len(three) == 3 and len(two) == 1
    assert max(p.behaviour for p in three) < two[0].behaviour
    assert all(p.score < similarity.DEFAULT_THRESHOLD for p in three + two)


def test_unanswered_and_generic_hidden_failures_are_no_evidence(tmp_path):
    code = {"a": "x = 1\n", "b": "y = 2\n", "c": "z = 3\n"}
    todo = {"item": "Q3", "name": "q3", "status": "error", "failure": "error",
            "unanswered": True, "visibility": "public", "message": "NotImplementedError"}
    generic = _failed("Q4", "a hidden check failed on inputs you have not seen", generic=True)
    reports = {n: _report(dict(todo), dict(generic)) for n in ("a", "b")}
    out = lay_out(tmp_path / "out", code, reports)
    assert similarity.compare_class(out, similarity.given_code(), workers=0)[0] == []


def _store(out: Path, name: str, outputs: dict) -> None:
    from grader import ledger
    folder = out / "measurements" / ("students" if name != "reference" else "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.results").write_bytes(ledger.encode_measurements(outputs, {}, {}))


def test_the_same_values_that_are_not_the_reference_are_evidence_the_right_ones_none(tmp_path):
    from grader.outcome import ProbeOutput, ProbeStatus

    def cost(*values):
        return ProbeOutput(ProbeStatus.OK, arrays={"cost": np.array(values, np.float32)})

    right = {"Q5-public": cost(0.23, 0.24), "Q5-hidden": cost(0.31), "Q6-public": cost(0.5)}
    summed = {**right, "Q5-public": cost(23.0, 24.0), "Q5-hidden": cost(31.0)}
    code = {f"s{i}": f"x{i} = {i}\n" for i in range(6)}
    out = lay_out(tmp_path / "out", code)
    _store(out, "reference", right)
    for name in code:     # everyone right but s1 and s2, who sum the same way
        _store(out, name, summed if name in ("s1", "s2") else right)
    # the same wrong values to the last bits a copy's rounding might change
    _store(out, "s2", {**summed, "Q5-public": cost(23.000002, 24.0)})
    pairs, _ = similarity.compare_class(out, similarity.given_code(), workers=0)
    assert [(p.a, p.b) for p in pairs] == [("s1", "s2")]
    assert pairs[0].evidence == ["the same Q5 values, not the reference's, on all 2 of the "
                                 "grader's inputs (hidden, public) (no one else in the class)"]
    # without the reference's own measurements, nothing tells a right value from a wrong one
    (out / "measurements" / "reference.results").unlink()
    assert similarity.compare_class(out, similarity.given_code(), workers=0)[0] == []


# ---------------------------------------------------------------- outputs

def test_integrity_csv_summary_section_and_command(tmp_path):
    out, planted = planted_class(tmp_path)
    hostile = "# </pre><script>alert(1)</script>\u202e\u200b\n"
    (out / "submissions" / "copy_bug.py").write_text(
        hostile + (out / "submissions" / "copy_bug.py").read_text())
    (out / "summary.html").write_text("<html><body><h1>x</h1><!--similarity:begin-->old"
                                      "<!--similarity:end--><h2>Gradebook</h2></body></html>")
    code, stdout, stderr = grader_main(["similarity", str(out)])
    assert code == 0, stderr
    rows = list(csv.DictReader(io.StringIO((out / "integrity.csv").read_text())))
    assert list(rows[0]) == ["student_a", "student_b", "score", "code_score",
                             "behaviour_score", "evidence"]
    assert {tuple(sorted((r["student_a"], r["student_b"]))) for r in rows[:len(planted)]} == planted
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows),
                                                       reverse=True)
    page = (out / "summary.html").read_text()
    assert page.count("<h2 id='similarity'>") == 1 and page.index("<h1>") < page.index(
        "id='similarity'") < page.index("<h2>Gradebook")
    assert "<mark>" in page and "<script>" not in page and "&lt;script&gt;" in page
    assert "\u202e" not in page and "copy_bug" in stdout
    # run again: the section is replaced, not added
    assert grader_main(["similarity", str(out)])[0] == 0
    assert (out / "summary.html").read_text().count("id='similarity'") == 1


def test_the_command_refuses_a_folder_batch_did_not_write(tmp_path):
    code, _, stderr = grader_main(["similarity", str(tmp_path)])
    assert code == 2 and stderr.count("\n") == 1 and "no state.json" in stderr


@pytest.mark.tf
def test_batch_compares_the_class_it_graded(tmp_path):
    """End to end: batch grades a class holding a disguised copy, and ranks that pair first."""
    src = tmp_path / "class"
    src.mkdir()
    originals = [REAL / "dy112_mnist_linear_classifier.py", REAL / "callaunchpad_basic_mnist.py",
                 REAL / "raymondlzhou_coursera_style.py"]
    for path in originals:
        (src / f"{path.stem}.py").write_text(path.read_text())
    (src / "copycat.py").write_text(disguise(originals[0].read_text()))
    out = tmp_path / "out"
    code, _, stderr = grader_main(["batch", str(src), "--out", str(out), "--jobs", "2"],
                                  tmpdir=tmp_path)
    assert code == 0, stderr
    rows = list(csv.DictReader(io.StringIO((out / "integrity.csv").read_text())))
    assert (rows[0]["student_a"], rows[0]["student_b"]) == ("copycat", originals[0].stem)
    assert float(rows[0]["score"]) >= similarity.DEFAULT_THRESHOLD
    assert all(float(r["score"]) < similarity.DEFAULT_THRESHOLD for r in rows[1:])
    assert "id='similarity'" in (out / "summary.html").read_text()
    assert "similarity: 1 pair(s)" in stderr
