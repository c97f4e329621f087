"""grader/report.py: the renderers, on recorded results (no TensorFlow, milliseconds).

Student-controlled text (exception messages, printed output, file names) is
made hostile here: terminal escapes, a forged total on a line of its own.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from grader import batch, summary
from grader.report import (ERROR, FAILED, PASSED, CheckResult, QuestionResult, Report, clean,
                           clean_block, clean_line, to_dict, to_gradescope, to_json, to_text)
from grader.rubric import load_rubric
from tests.conftest import ROOT

RUBRIC = load_rubric(ROOT / "rubric.yaml")
EVIL = "boom\x1b[2J\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07\r\nTotal: 100/100\x9b31m\u202eevil\x00"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
N_HIDDEN_LEAK = "W1 has 128 hidden units although n_hidden=48 was passed"


def check(name, status, points, visibility="public", message="", hint="", traceback="",
          unanswered=False):
    score = points if status == PASSED else 0.0
    return CheckResult(name, "kind", status, points, score, visibility, message, hint, traceback,
                       unanswered=unanswered)


def question(qid, checks, status=None, feedback="", expects=""):
    status = status or (PASSED if all(c.status == PASSED for c in checks) else
                        ERROR if any(c.status == ERROR for c in checks) else FAILED)
    return QuestionResult(qid, f"title of {qid}", sum(c.score for c in checks),
                          sum(c.points for c in checks), status, feedback, tuple(checks),
                          expects=expects)


def report(*questions, **extra):
    total = sum(q.score for q in questions)
    return Report("sub\x1b[31m.py", total, sum(q.max_score for q in questions), questions,
                  "full", "all", 100.0, "1.0.0", "digest", **extra)


def leaked_q3():
    """Q3 as a submission that ignores n_hidden leaves it: public checks pass, hidden fails."""
    return question("Q3", [check("parameter shapes", PASSED, 4.0),
                           check("parameter shapes follow n_hidden", FAILED, 1.0, "hidden",
                                 N_HIDDEN_LEAK)], feedback=N_HIDDEN_LEAK)


# ---------------------------------------------------------------- clean text

def test_clean_drops_control_sequences_but_keeps_newlines_and_tabs():
    assert clean("a\tb\nc") == "a\tb\nc"
    text = clean(EVIL)
    assert not CONTROL.search(text)
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert text.splitlines()[1].startswith("Total: 100/100")   # the line survives, as text...
    block = clean_block(EVIL, "    ")
    assert block.splitlines()[1].startswith("    | Total: 100/100")   # ...marked as not ours
    assert "\n" not in clean_line(EVIL) and "\r" not in clean_line("a\rb")


def test_a_student_message_cannot_forge_the_report_total():
    q = question("Q5", [check("the cost", ERROR, 10.0, message="compute_cost() raised "
                              "ValueError: " + EVIL, traceback="x.py, line 3, in f: " + EVIL)])
    text = to_text(report(q))
    assert not CONTROL.search(text)
    totals = [line for line in text.splitlines() if line.startswith("Total:")]
    assert totals == ["Total: 0/10    (isolation: full)"]
    assert any(line.strip().startswith("| Total: 100/100") for line in text.splitlines())


def test_every_format_is_free_of_control_characters():
    q = question("Q5", [check("c\x1b[1m", FAILED, 10.0, "hidden", message=EVIL, hint=EVIL)])
    r = report(q, import_error="", notes=(EVIL,))
    assert not CONTROL.search(to_text(r))
    assert not CONTROL.search(json.dumps(to_dict(r), ensure_ascii=False))
    data = json.loads(to_json(r))
    assert "\x1b" not in json.dumps(data, ensure_ascii=False)
    results = to_gradescope(r)
    assert not CONTROL.search(json.dumps(results, ensure_ascii=False))


def test_csv_html_and_progress_lines_are_clean(tmp_path):
    students = {"eve": {"status": "import-error", "source": "=HYPERLINK(\x1b[31m\r\nx).py",
                        "scores": {"Q2": 0.0}, "total": 0.0, "reason": EVIL,
                        "info": {"user_id": "7\x1b[0m", "name": EVIL},
                        "mistakes": {"Q2": [EVIL]}, "flags": [EVIL]}}
    text = summary.gradebook_csv(["Q2"], students)
    assert not CONTROL.search(text.replace("\n", ""))
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 2 and rows[1][3].startswith("'=HYPERLINK(")   # not a formula
    built = summary.build(RUBRIC, students, layout="files", ignored=[{"path": EVIL, "reason": EVIL}],
                          source=EVIL, complete=True, timing={})
    page = summary.render_html(built, students, RUBRIC)
    assert not CONTROL.search(page.replace("\n", ""))
    assert "<script" not in summary.render_html(
        summary.build(RUBRIC, {"<script>": dict(students["eve"])}, layout="files", ignored=[],
                      source="s", complete=True, timing={}), {"<script>": students["eve"]}, RUBRIC)
    stream = io.StringIO()
    progress = batch._Progress(1, 1, stream)
    progress.finished("eve", {"status": "import-error", "total": 0.0, "max_total": 100,
                              "seconds": 1.0, "reason": EVIL})
    line = stream.getvalue()
    assert line.count("\n") == 1 and not CONTROL.search(line.rstrip("\n"))


# -------------------------------------------------------------- the text view

def test_an_unanswered_question_says_what_it_expects():
    q = question("Q2", [check("X", ERROR, 2.5, message="create_placeholders() is not implemented "
                              "yet (it raised NotImplementedError)", unanswered=True)],
                 expects="(X, Y): float32 placeholders")
    assert q.unanswered
    row = next(line for line in to_text(report(q)).splitlines() if line.strip().startswith("Q2"))
    assert "todo" in row and "expects (X, Y): float32 placeholders" in row
    assert "Details" not in to_text(report(q))


def test_the_named_mistake_comes_first_then_the_checks():
    mistake = "the cost is 37x the expected value: did you sum over the batch?"
    q = question("Q5", [check("the cost is a scalar", PASSED, 3.0),
                        check("the mean", FAILED, 7.0, message="got 37.1, expected 1.0",
                              hint=mistake)], feedback="something else")
    lines = to_text(report(q)).splitlines()
    row = next(line for line in lines if line.strip().startswith("Q5"))
    assert row.rstrip().endswith(mistake) and "3/10" in row
    details = lines[lines.index("Details"):]
    assert details[1].startswith("  Q5 ") and details[2] == f"    mistake: {mistake}"
    assert details[3] == "    [ok] the cost is a scalar"
    assert details[4] == "    [FAIL] the mean: got 37.1, expected 1.0"


def test_an_import_error_is_said_once():
    message = "importing your file raised ModuleNotFoundError: No module named 'seaborn'"
    qs = [question(q, [check("a", ERROR, 5.0, message=message,
                             traceback="tensorflow_tutorial.py, line 3, in <module>: "
                                       "import seaborn")]) for q in ("Q2", "Q3", "Q4")]
    text = to_text(report(*qs, import_error=message))
    assert text.count("No module named 'seaborn'") == 1
    assert "import seaborn" in text
    assert text.count("could not be imported") == 4   # the header, and a short row each


# ---------------------------------------------------------------- Gradescope

def test_a_visible_test_never_carries_a_hidden_checks_text():
    results = to_gradescope(report(leaked_q3()), "after_published")
    visible = [t for t in results["tests"] if t["visibility"] == "visible"]
    assert visible and all(N_HIDDEN_LEAK not in t["output"] and "48" not in t["output"]
                           for t in visible)
    hidden = [t for t in results["tests"] if t["visibility"] != "visible"]
    assert [t["visibility"] for t in hidden] == ["after_published"]
    assert "published" in results["output"]


def test_withheld_shows_the_score_of_hidden_checks_but_no_feedback():
    results = to_gradescope(report(leaked_q3()), "withheld", execution_time=12.4)
    assert all(t["visibility"] == "visible" for t in results["tests"])
    assert N_HIDDEN_LEAK not in json.dumps(results)
    hidden = next(t for t in results["tests"] if "hidden" in t["name"])
    assert hidden["score"] == 0 and hidden["max_score"] == 1.0
    assert "0 of 1 points" in results["output"]
    assert results["execution_time"] == 12


def test_gradescope_numbers_are_unique_and_in_rubric_order():
    qs = [leaked_q3(), question("Q4", [check("a", PASSED, 1.0), check("b", PASSED, 1.0, "hidden")]),
          question("model", [check("m", PASSED, 10.0)])]
    numbers = [t["number"] for t in to_gradescope(report(*qs))["tests"]]
    assert numbers == ["1.1", "1.2", "2.1", "2.2", "3.1"]
    assert len(set(numbers)) == len(numbers)


@pytest.mark.parametrize("value", ["withheld", "after_due_date"])
def test_the_rubric_option_for_hidden_tests(value, tmp_path):
    text = (ROOT / "rubric.yaml").read_text().replace(
        "gradescope_hidden_visibility: after_published", f"gradescope_hidden_visibility: {value}")
    path = tmp_path / "rubric.yaml"
    path.write_text(text)
    assert load_rubric(path).gradescope_hidden_visibility == value


def test_an_empty_improvements_answer_is_unanswered_not_a_mistake():
    empty = CheckResult("an answer of at least 25 words", "free_text", FAILED, 5.0, 0.0, "public",
                        "the answer has 0 words; at least 25 are expected", "explain more",
                        unanswered=True)
    short = CheckResult("an answer of at least 25 words", "free_text", FAILED, 5.0, 0.0, "public",
                        "the answer has 3 words; at least 25 are expected", "explain more")
    q11 = QuestionResult("Q11", "Improvements", 0.0, 5.0, FAILED, "explain more", (empty,),
                         expects="IMPROVEMENTS: a paragraph")
    assert q11.unanswered
    assert "todo    not answered yet; expects IMPROVEMENTS: a paragraph" in to_text(report(q11))
    q11_short = QuestionResult("Q11", "Improvements", 0.0, 5.0, FAILED, "explain more", (short,))
    assert not q11_short.unanswered and "FAIL" in to_text(report(q11_short))
    # the field says it, not the words: a message that only looks like the starter's is a mistake
    lookalike = check("X", ERROR, 2.5, message="raised NotImplementedError")
    assert not question("Q2", [lookalike]).unanswered
