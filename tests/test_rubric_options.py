"""grader/rubric.py: the items' one-line ``expects`` and the Gradescope option."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from grader.errors import RubricError
from grader.rubric import load_rubric, parse_rubric
from tests.conftest import ROOT


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((ROOT / "rubric.yaml").read_text())


def test_every_item_says_what_it_expects():
    for item in load_rubric(ROOT / "rubric.yaml").items:
        assert 20 <= len(item.expects) <= 200 and "\n" not in item.expects, item.id


@pytest.mark.parametrize("value,problem", [
    (["a list"], "questions[0].expects: ['a list'] is a list, expected str"),
    ("two\nlines", "questions[0].expects: must be one line of at most 200 characters"),
    ("x" * 201, "questions[0].expects: must be one line of at most 200 characters"),
])
def test_a_bad_expects_is_refused_with_its_key_path(raw, value, problem):
    raw["questions"][0]["expects"] = value
    with pytest.raises(RubricError) as info:
        parse_rubric(raw, Path("rubric.yaml"))
    assert f"rubric.yaml: {problem}" in str(info.value).splitlines()


def test_the_gradescope_option_accepts_withheld_and_refuses_the_unknown(raw):
    raw["gradescope_hidden_visibility"] = "withheld"
    assert parse_rubric(raw, Path("rubric.yaml")).gradescope_hidden_visibility == "withheld"
    raw["gradescope_hidden_visibility"] = "sometimes"
    with pytest.raises(RubricError, match="gradescope_hidden_visibility: 'sometimes' is not one"):
        parse_rubric(raw, Path("rubric.yaml"))


def test_everything_the_readme_links_to_is_in_the_repository():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#:]+)\)", text)
    assert "docs/assignment.md" in links
    for link in links:
        assert (ROOT / link).exists(), link
    assert "../shared" not in text
