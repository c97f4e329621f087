"""Every scored check is asked for by the starter: rubric.yaml's asked_by sentences.

A check that scores something quotes, in ``asked_by``, the sentence of
starter/tensorflow_tutorial.py (a docstring or a comment) that asks for it.  A
check the starter does not ask for is advice: ``advice: true``, weight 0,
reported and never a failure.  Pure Python: no TensorFlow.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from grader.errors import RubricError
from grader.rubric import load_rubric, parse_rubric, starter_sentences, untraceable_checks

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = ROOT / "rubric.yaml"
STARTER = ROOT / "starter" / "tensorflow_tutorial.py"
ASK_FOR_THE_RATE = "Build the optimizer from the learning_rate argument."


@pytest.fixture()
def raw():
    return yaml.safe_load(RUBRIC.read_text())


def q7_rate_check(data: dict) -> dict:
    item = next(q for q in data["questions"] if q["id"] == "Q7")
    return next(c for c in item["checks"] if c["kind"] == "uses_learning_rate")


def test_every_scored_check_quotes_a_sentence_of_the_starter():
    problems = untraceable_checks(load_rubric(RUBRIC), STARTER.read_text())
    assert not problems, "\n".join(problems)


def test_every_check_is_scored_with_a_sentence_or_is_advice():
    for item in load_rubric(RUBRIC).items:
        for check in item.checks:
            if check.advice:
                assert check.weight == 0, f"{item.id} {check.name}"
            else:
                assert check.weight > 0 and check.spec["asked_by"].strip(), f"{item.id} {check.name}"


def test_the_learning_rate_check_is_advice_by_default():
    check = q7_rate_check(yaml.safe_load(RUBRIC.read_text()))
    assert check.get("advice") is True and check["weight"] == 0


def test_switching_the_learning_rate_check_on_needs_the_starter_to_ask_for_it(raw):
    check = q7_rate_check(raw)
    check.update(advice=False, weight=1, asked_by=ASK_FOR_THE_RATE)
    rubric = parse_rubric(raw, Path("rubric.yaml"))
    starter = STARTER.read_text()
    problems = untraceable_checks(rubric, starter)
    assert len(problems) == 1 and "Q7" in problems[0] and ASK_FOR_THE_RATE in problems[0]
    # an instructor who wants the argument honoured says so in the docstring
    asking = starter.replace("    - Running the returned operation does the update",
                             f"    - {ASK_FOR_THE_RATE}\n    - Running the returned operation "
                             "does the update", 1)
    assert asking != starter
    assert untraceable_checks(rubric, asking) == []


def test_switching_it_on_without_a_sentence_fails_validation(raw):
    check = q7_rate_check(raw)
    check.update(advice=False, weight=1)
    with pytest.raises(RubricError, match=r"questions\[5\]\.checks\[1\]\.asked_by: is missing"):
        parse_rubric(raw, Path("rubric.yaml"))


@pytest.mark.parametrize("change, message", [
    ({"advice": True, "weight": 1}, "an advice check is worth no points: give it weight: 0"),
    ({"weight": 0}, "must be positive (a check worth no points is advice"),
    ({"asked_by": "   "}, "asked_by: is empty"),
    ({"asked_by": 3}, "asked_by: 3 is a int, expected str"),
    ({"advice": "yes"}, "advice: 'yes' is a str, expected true or false"),
])
def test_advice_and_asked_by_are_validated_with_their_key_path(raw, change, message):
    raw["questions"][0]["checks"][0].update(change)
    with pytest.raises(RubricError) as info:
        parse_rubric(raw, Path("rubric.yaml"))
    assert "rubric.yaml: questions[0].checks[0]." in str(info.value)
    assert message in str(info.value)


def test_an_item_needs_one_scored_check(raw):
    for check in raw["questions"][0]["checks"]:
        check.update(advice=True, weight=0)
    with pytest.raises(RubricError, match=r"questions\[0\]\.checks: every check is advice"):
        parse_rubric(raw, Path("rubric.yaml"))


def test_free_text_terms_are_validated(raw):
    q11 = next(q for q in raw["questions"] if q["id"] == "Q11")["checks"][0]
    bad = copy.deepcopy(raw)
    next(q for q in bad["questions"] if q["id"] == "Q11")["checks"][0]["terms"] = {
        "dropout": [], "cnn": "convolution"}
    with pytest.raises(RubricError) as info:
        parse_rubric(bad, Path("rubric.yaml"))
    assert "terms.dropout: expected a non-empty list" in str(info.value)
    assert "terms.cnn: expected a non-empty list" in str(info.value)
    assert q11["min_terms"] <= len(q11["terms"])


def test_a_sentence_may_span_wrapped_lines_and_comments():
    text = starter_sentences(STARTER.read_text())
    assert "Name at least two concrete changes and say why each would help" in text
    assert "the mean over the batch of the softmax cross-entropy between the logits Z2" in text
    assert "YOUR CODE HERE" in text  # comments count too
    assert "import tensorflow" not in text  # code does not


def test_the_readme_table_quotes_the_starter():
    """docs/design.md's "How a submission is graded": one row per item, each quoting the
    starter."""
    design = (ROOT / "docs" / "design.md").read_text()
    section = design.split("## How a submission is graded", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    items = [row.split("|")[1].strip() for row in rows[1:]]
    assert items == [i.id for i in load_rubric(RUBRIC).items]
    text = starter_sentences(STARTER.read_text())
    for row in rows[1:]:
        quotes = row.split("|")[-2].split('"')[1::2]
        assert quotes, row
        for quote in quotes:
            assert " ".join(quote.split()) in text, f"the starter does not say {quote!r}"
