"""The fixture corpus: real submissions graded end to end, each with the scores it must get.

Two kinds of fixture live in tests/corpus/:

- mutants.yaml: the reference with a few exact text replacements (one classic
  mistake, or a correct variant), described at the top of that file;
- *.py, real/*.py and notebooks/*.ipynb: whole submissions, whose first comment
  lines (a notebook's: of its first code cell) give
  ``# expect: {"Q5": 0}`` (JSON; items not listed must get full marks, and
  "any" leaves an item's score unasserted) and
  optionally ``# feedback: {"Q5": "sum"}`` (case-insensitive substrings that
  must appear in that item's feedback, check messages or hints).

Every fixture is graded by ``python -m grader check FILE --format json``'s own
``main``, run in the test process so that one warm TensorFlow (the grader's
zygote) serves all the fixtures a pytest-xdist worker grades; one test per
fixture, so that xdist spreads them over the cores. A test checks that this
gives the same bytes as the command in a process of its own. The test process
never imports TensorFlow.

real/ holds public solutions of this tutorial and of the classic TF1 MNIST
multilayer perceptrons, each ported into the contract in its own style; its
header names the source (repository and path) and labels every item from the
starter's text, not from what the grader says ("any" where a label is a
judgment call, with why).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import IN_PROCESS, grader_main

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
REAL = CORPUS / "real"
NOTEBOOKS = CORPUS / "notebooks"
MUTANTS = CORPUS / "mutants.yaml"
REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"
STARTER = ROOT / "starter" / "tensorflow_tutorial.py"
RUBRIC = ROOT / "rubric.yaml"
SUBMISSION_NAME = "tensorflow_tutorial.py"
TOLERANCE = 0.01
GRADE_TIMEOUT = 600
MUTANT_KEYS = {"name", "about", "replace", "expect", "feedback", "xfail"}
ANY = "any"  # an expected score that is not asserted


@dataclass(frozen=True)
class Fixture:
    name: str
    origin: str                      # where it is defined, for error messages
    expect: dict
    feedback: dict = field(default_factory=dict)
    replace: tuple = ()              # mutants: ((old, new), ...)
    path: Path | None = None         # whole files
    xfail: str | None = None

    def source(self) -> str:
        """The submission's text; fails the test when a replacement does not apply."""
        if self.path is not None:
            return self.path.read_text(encoding="utf-8")
        text = REFERENCE.read_text(encoding="utf-8")
        for i, (old, new) in enumerate(self.replace):
            count = text.count(old)
            if count != 1:
                pytest.fail(f"{self.origin}: replace[{i}]: the old text occurs {count} times in "
                            f"{REFERENCE.relative_to(ROOT)} (it must occur exactly once):\n{old}",
                            pytrace=False)
            text = text.replace(old, new)
        return text


# ------------------------------------------------------------------ loading

def _rubric_points() -> dict[str, float]:
    data = yaml.safe_load(RUBRIC.read_text(encoding="utf-8"))
    return {q["id"]: float(q["points"]) for q in data["questions"]}


def _load_mutants() -> list[Fixture]:
    entries = yaml.safe_load(MUTANTS.read_text(encoding="utf-8")) or []
    fixtures = []
    for i, entry in enumerate(entries):
        origin = f"{MUTANTS.name}[{i}] ({entry.get('name', '?')})"
        replace = tuple(tuple(pair) for pair in entry.get("replace") or ())
        fixtures.append(Fixture(name=str(entry.get("name")), origin=origin,
                                expect=dict(entry.get("expect") or {}),
                                feedback=dict(entry.get("feedback") or {}),
                                replace=replace, xfail=entry.get("xfail")))
    return fixtures


def _header(path: Path) -> dict[str, dict]:
    """The JSON of the leading ``# key: {...}`` comment lines (of a notebook's first code cell)."""
    found = {}
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        cells = [c for c in json.loads(text)["cells"] if c["cell_type"] == "code"]
        text = "".join(cells[0]["source"]) if cells else ""
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(":")
        if sep and key in ("expect", "feedback", "xfail"):
            try:
                found[key] = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"{path.name}: the '# {key}:' header is not JSON: {exc}") from None
    return found


def _load_files() -> list[Fixture]:
    fixtures = []
    for path in (sorted(CORPUS.glob("*.py")) + sorted(REAL.glob("*.py"))
                 + sorted(NOTEBOOKS.glob("*.ipynb"))):
        header = _header(path)
        name = path.stem if path.parent == CORPUS else f"{path.parent.name}_{path.stem}"
        fixtures.append(Fixture(name=name, origin=str(path.relative_to(CORPUS)),
                                expect=header.get("expect"),
                                feedback=header.get("feedback") or {}, path=path,
                                xfail=header.get("xfail")))
    return fixtures


FIXTURES = _load_mutants() + _load_files()


def _params():
    for fx in FIXTURES:
        marks = [pytest.mark.xfail(reason=fx.xfail, strict=True)] if fx.xfail else []
        yield pytest.param(fx, id=fx.name, marks=marks)


# ------------------------------------------------------------------ grading

@dataclass(frozen=True)
class Graded:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def report(self) -> dict:
        return json.loads(self.stdout)

    def summary(self) -> str:
        """One line per item, to read a failure without rerunning the grader."""
        try:
            report = self.report
        except ValueError:
            return f"(no JSON report)\nstderr: {self.stderr[-2000:]}"
        lines = [f"exit {self.returncode}, total {report['total']}/{report['max_total']}"]
        for q in report["questions"]:
            lines.append(f"  {q['id']:<5} {q['score']:>7.3f}/{q['max_score']:<5g} {q['feedback']}")
            for c in q.get("checks", []):
                if c["status"] != "passed":
                    lines.append(f"        [{c['status']}] {c['name']}: {c['message']}"
                                 f" | {c['hint']}")
        return "\n".join(lines)


def grade(path: Path) -> Graded:
    """Grade ``path`` as ``python -m grader check PATH --format json`` does, in this process.

    The command's own ``main`` runs here, so the warm TensorFlow (the zygote) it
    starts serves every fixture this test process grades: each grade costs its
    items, not a TensorFlow import. This process still never imports TensorFlow.
    """
    if not IN_PROCESS:  # how it was done before (make bench compares)
        return grade_in_a_new_process(path)
    code, stdout, stderr = grader_main(["check", str(path), "--format", "json"])
    graded = Graded(code, stdout.encode("utf-8"), stderr)
    assert graded.returncode in (0, 1), (f"the grader failed (exit {graded.returncode}) on "
                                         f"{path}:\n{graded.stderr[-3000:]}")
    return graded


def grade_in_a_new_process(path: Path) -> Graded:
    """The same through the command line, in a process of its own (a zygote of its own)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    command = [sys.executable, "-m", "grader", "check", str(path), "--format", "json"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=GRADE_TIMEOUT)
    graded = Graded(result.returncode, result.stdout, result.stderr.decode("utf-8", "replace"))
    assert graded.returncode in (0, 1), (f"the grader failed (exit {graded.returncode}) on "
                                         f"{path}:\n{graded.stderr[-3000:]}")
    return graded


def _texts(question: dict) -> list[str]:
    texts = [question.get("feedback", "")]
    for c in question.get("checks", []):
        texts += [c.get("message", ""), c.get("hint", "")]
    return texts


def assert_scores(graded: Graded, expect: dict, feedback: dict) -> None:
    report = graded.report
    summary = graded.summary()
    questions = {q["id"]: q for q in report["questions"]}
    unknown = set(expect) - set(questions)
    assert not unknown, f"expect names items the report lacks: {sorted(unknown)}"
    wrong = []
    for qid, q in questions.items():
        if expect.get(qid) == ANY:
            continue
        want = float(expect.get(qid, q["max_score"]))
        if abs(float(q["score"]) - want) > TOLERANCE:
            wrong.append(f"{qid}: got {q['score']:.4f}, expected {want:.4f}")
    assert not wrong, "; ".join(wrong) + "\n" + summary
    for qid, needle in feedback.items():
        texts = _texts(questions[qid])
        assert any(needle.lower() in t.lower() for t in texts), \
            f"{qid}: no feedback mentions {needle!r}\n{summary}"
    full = all(abs(float(q["score"]) - float(q["max_score"])) <= TOLERANCE
               for q in questions.values())
    assert graded.returncode == (0 if full else 1), \
        f"exit code {graded.returncode} for {'full marks' if full else 'points lost'}\n{summary}"


# -------------------------------------------------------------------- tests

@pytest.fixture(autouse=True)
def _no_tensorflow_here():
    yield
    assert "tensorflow" not in sys.modules, "the test process imported TensorFlow"


def test_corpus_is_well_formed():
    """Names, keys and expectations are valid, and every replacement applies exactly once."""
    points = _rubric_points()
    raw = yaml.safe_load(MUTANTS.read_text(encoding="utf-8"))
    assert isinstance(raw, list) and raw, f"{MUTANTS.name}: expected a non-empty list"
    problems = []
    for i, entry in enumerate(raw):
        where = f"{MUTANTS.name}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        unknown = set(entry) - MUTANT_KEYS
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("name", "about", "replace", "expect"):
            if key not in entry:
                problems.append(f"{where}: '{key}' is missing")
        pairs = entry.get("replace") or []
        if not pairs:
            problems.append(f"{where}: 'replace' is empty")
        for j, pair in enumerate(pairs):
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(s, str) for s in pair)):
                problems.append(f"{where}.replace[{j}]: expected [old, new], two strings")
    reference = REFERENCE.read_text(encoding="utf-8")
    names = [fx.name for fx in FIXTURES]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"fixture names used twice: {duplicates}")
    for fx in FIXTURES:
        if fx.expect is None:
            problems.append(f"{fx.origin}: no '# expect: {{...}}' header")
            continue
        for qid, score in {**fx.expect}.items():
            if qid not in points:
                problems.append(f"{fx.origin}: expect: {qid!r} is not an item of rubric.yaml")
            elif score == ANY:
                continue
            elif not isinstance(score, (int, float)) or not 0 <= score <= points[qid]:
                problems.append(f"{fx.origin}: expect: {qid}: {score!r} is not in "
                                f"[0, {points[qid]:g}]")
        for qid in fx.feedback:
            if qid not in points:
                problems.append(f"{fx.origin}: feedback: {qid!r} is not an item of rubric.yaml")
        text = reference
        for j, (old, new) in enumerate(fx.replace):
            count = text.count(old)
            if count != 1:
                problems.append(f"{fx.origin}: replace[{j}]: the old text occurs {count} times")
            elif old == new:
                problems.append(f"{fx.origin}: replace[{j}]: old and new are the same")
            else:
                text = text.replace(old, new)
    assert not problems, "\n".join(problems)
    assert len(FIXTURES) >= 30, f"the corpus has {len(FIXTURES)} fixtures; at least 30 are expected"


def test_real_solutions_say_where_they_come_from():
    """Every port names its source repository and path, and why any unasserted label is one."""
    files = sorted(REAL.glob("*.py"))
    assert len(files) >= 10, f"{REAL.name}/ has {len(files)} ports; at least 10 are expected"
    problems = []
    for path in files:
        head = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            head.append(line)
        text = "\n".join(head)
        if "# source: " not in text or "," not in text.split("# source: ", 1)[1].splitlines()[0]:
            problems.append(f"{path.name}: no '# source: owner/repo, path' line")
        if "# labels" not in text:
            problems.append(f"{path.name}: no '# labels' comment deriving the expectations")
        if ANY in json.dumps(_header(path).get("expect")) and "judgment call" not in text:
            problems.append(f"{path.name}: an unasserted item without the judgment call explained")
    assert not problems, "\n".join(problems)


# The slow tests come first, so that xdist starts them early.

def test_reference_gets_full_marks_and_the_same_json_twice():
    """Here and from the command line in a new process: the same bytes."""
    first, second = grade(REFERENCE), grade_in_a_new_process(REFERENCE)
    assert_scores(first, {}, {})
    assert first.report["total"] == first.report["max_total"] == 100
    assert first.stdout == second.stdout, "a grade here and one by the command line differ"


def test_starter_gets_zero_with_feedback_everywhere():
    graded = grade(STARTER)
    report = graded.report
    assert graded.returncode == 1, graded.summary()
    assert report["total"] == 0, graded.summary()
    for q in report["questions"]:
        assert q["score"] == 0, f"{q['id']}\n{graded.summary()}"
        assert q["feedback"].strip(), f"{q['id']} has no feedback\n{graded.summary()}"


def test_a_failing_submission_gets_the_same_json_twice(tmp_path):
    fixture = next(fx for fx in FIXTURES if fx.name == "optimizer_returned")
    path = tmp_path / SUBMISSION_NAME
    path.write_text(fixture.source(), encoding="utf-8")
    first, second = grade(path), grade(path)
    assert first.returncode == 1
    assert first.stdout == second.stdout, "two grades of the same file differ"


@pytest.mark.parametrize("fixture", list(_params()))
def test_fixture_gets_its_expected_scores(fixture: Fixture, tmp_path):
    assert fixture.expect is not None, f"{fixture.origin}: no '# expect: {{...}}' header"
    path = tmp_path / SUBMISSION_NAME
    if fixture.path is not None and fixture.path.suffix == ".ipynb":
        path = path.with_suffix(".ipynb")
    path.write_text(fixture.source(), encoding="utf-8")
    assert_scores(grade(path), fixture.expect, fixture.feedback)
