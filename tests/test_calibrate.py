"""grader/calibrate.py: which pipelines must learn, and the step count that separates them."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.calibrate import (LEARNS, SHOWN, STILL, always_failing, corpus_pipelines,
                              separation)
from grader.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "reference" / "tensorflow_tutorial.py").read_text()


def test_the_corpus_says_which_pipelines_learn():
    found = {p.name: p for p in corpus_pipelines(ROOT / "tests" / "corpus", REFERENCE, 10.0)}
    assert found["weights_zeros"].kind == STILL        # expect {model: 0}
    assert found["fixed_batch"].kind == STILL
    assert found["weights_stddev_one"].kind == SHOWN   # model: any
    assert found["adagrad_fixed_0_3"].kind == LEARNS   # model not listed: full marks
    assert found["alt_style_correct"].kind == LEARNS   # a whole file, its header
    assert any(name.startswith("real_") for name in found)
    assert "tf.zeros([784, n_hidden]" in found["weights_zeros"].source
    assert found["weights_zeros"].source != REFERENCE


def test_only_names_fixtures_that_exist():
    picked = corpus_pipelines(ROOT / "tests" / "corpus", REFERENCE, 10.0, {"fixed_batch"})
    assert [p.name for p in picked] == ["fixed_batch"]
    with pytest.raises(UsageError, match="no corpus fixture named nope"):
        corpus_pipelines(ROOT / "tests" / "corpus", REFERENCE, 10.0, {"fixed_batch", "nope"})


def test_a_step_count_separates_only_with_the_margin_on_both_sides():
    rows = {"ref": (LEARNS, {300: 0.93, 1500: 0.94}),
            "slow": (LEARNS, {300: 0.60, 1500: 0.89}),
            "frozen": (STILL, {300: 0.55, 1500: 0.70}),
            "crash": (STILL, {300: "error", 1500: "error"}),
            "borderline": (SHOWN, {300: 0.99, 1500: 0.01})}
    threshold, low, high = separation(rows, 300, 0.05)
    assert threshold is None                        # 0.60 vs 0.55: too close
    assert low.endswith("slow") and high.endswith("frozen")
    threshold, low, high = separation(rows, 1500, 0.05)
    assert threshold == pytest.approx(0.84)         # 0.89 - 0.05, and 0.14 above 0.70
    rows["broken"] = (LEARNS, {300: "error", 1500: "error"})  # fails whatever the steps:
    assert always_failing(rows) == ["crash", "broken"]       # left out of the separation
    assert separation(rows, 1500, 0.05)[0] == pytest.approx(0.84)
    rows["late"] = (LEARNS, {300: "timeout", 1500: 0.95})     # fails at 300 only: counts as 0
    assert separation(rows, 300, 0.0)[0] is None
