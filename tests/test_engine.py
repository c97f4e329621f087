"""grader/engine.py: what the parent accepts from a child, and how it scores it.

The child's files are forged by hand here, as a hostile submission could
forge them: the parent must accept only plain numeric arrays and plain JSON.
"""

import io
import json
import os
import zipfile

import numpy as np
import pytest

from grader import engine
from grader.outcome import ProbeOutput
from grader.rubric import load_rubric

RUBRIC = load_rubric(engine.PROJECT_ROOT / "rubric.yaml")


def write(out, task, meta, arrays=None):
    out.mkdir(exist_ok=True)
    (out / f"{task}.json").write_text(json.dumps(meta))
    np.savez(out / f"{task}.npz", **(arrays or {}))


def test_plain_arrays_and_json_are_read(tmp_path):
    write(tmp_path, "Q5-public", {"cost": {"dtype": "float32"}}, {"cost": np.float64(2.5)})
    out = engine.read_output(tmp_path, "Q5-public")
    assert out.ok and out.meta["cost"]["dtype"] == "float32"
    assert float(out.array("cost")) == 2.5


def test_an_error_report_becomes_the_items_error(tmp_path):
    write(tmp_path, "Q4-public", {"error": {"message": "forward_propagation() raised ValueError: x",
                                            "traceback": "tensorflow_tutorial.py, line 3"}})
    out = engine.read_output(tmp_path, "Q4-public")
    assert out.status == "error" and "ValueError" in out.message


def test_pickled_object_arrays_are_refused(tmp_path):
    tmp_path.joinpath("Q5-public.json").write_text("{}")
    np.savez(tmp_path / "Q5-public.npz", cost=np.array([object()], dtype=object))
    out = engine.read_output(tmp_path, "Q5-public")
    assert out.status == "error" and "could not read" in out.message


@pytest.mark.parametrize("payload", [b"not a zip", b"PK\x03\x04garbage"])
def test_forged_npz_files_are_refused(tmp_path, payload):
    tmp_path.joinpath("Q5-public.json").write_text("{}")
    tmp_path.joinpath("Q5-public.npz").write_bytes(payload)
    assert engine.read_output(tmp_path, "Q5-public").status == "error"


def test_strings_and_huge_arrays_are_refused(tmp_path):
    write(tmp_path, "a", {}, {"x": np.array(["text"])})
    assert engine.read_output(tmp_path, "a").status == "error"
    write(tmp_path, "b", {}, {"x": np.zeros(engine.MAX_ARRAY_SIZE + 1, np.uint8)})
    assert engine.read_output(tmp_path, "b").status == "error"


def test_json_that_is_not_plain_data_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz")
    for text in ("[1, 2]", "{\"a\": NaN", "\xff\xfe", json.dumps({"a": [[[[[[[[1]]]]]]]]})):
        tmp_path.joinpath("a.json").write_bytes(text.encode("utf-8", "surrogateescape")
                                                if isinstance(text, str) else text)
        assert engine.read_output(tmp_path, "a").status == "error", text


def test_symlinks_fifos_and_missing_files_are_never_followed(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"stolen": True}))
    out = tmp_path / "out"
    out.mkdir()
    np.savez(out / "a.npz")
    os.symlink(secret, out / "a.json")
    assert engine.read_output(out, "a").status == "error"
    os.mkfifo(out / "b.json")
    np.savez(out / "b.npz")
    assert engine.read_output(out, "b").status == "error"  # and it did not block
    assert engine.read_output(out, "missing").message == "no result was recorded"


def test_an_oversized_file_is_refused_without_reading_it(tmp_path):
    np.savez(tmp_path / "a.npz")
    with open(tmp_path / "a.json", "wb") as f:
        f.truncate(engine.MAX_JSON_BYTES + 1)
    assert engine.read_output(tmp_path, "a").status == "error"


def test_progress_lines_pick_the_budget_of_the_running_item():
    budgets = {"startup": 60.0, "import": 20.0, "between": 10.0, "Q4-public": 5.0}
    phase = engine._Phase("startup", 0.0, 60.0)
    phase = engine._current_phase(["ready", "start import"], 1.0, budgets, phase)
    assert (phase.name, phase.budget, phase.started) == ("import", 20.0, 1.0)
    phase = engine._current_phase(["ready", "start import", "done import", "start Q4-public"],
                                  2.0, budgets, phase)
    assert (phase.name, phase.budget) == ("Q4-public", 5.0)
    same = engine._current_phase(["start Q4-public"], 3.0, budgets, phase)
    assert same.started == 2.0


def test_scores_are_split_by_check_weight_and_errors_cost_only_their_item():
    tasks = engine.plan(RUBRIC, ("public", "hidden"))
    item = RUBRIC.item("Q5")
    mine = [t for t in tasks if t.item is item]
    value = {"cost": np.float64(2.0)}
    expected = {t.id: ProbeOutput("ok", {"cost": {"dtype": "float32"}}, value) for t in mine}
    got = dict(expected)
    result = engine.score_item(item, mine, got, expected, RUBRIC)
    assert result.score == result.max_score == 10
    wrong = {t.id: ProbeOutput("ok", {}, {"cost": np.float64(3.0)}) for t in mine}
    result = engine.score_item(item, mine, wrong, expected, RUBRIC)
    assert result.status == "failed"
    assert result.score == pytest.approx(10 * 1 / 5)  # only the scalar-shape check passes
    crashed = {t.id: ProbeOutput.failure("timeout", "timed out after 20 s in compute_cost")
               for t in mine}
    result = engine.score_item(item, mine, crashed, expected, RUBRIC)
    assert result.score == 0 and result.status == "error"
    assert result.feedback == "timed out after 20 s in compute_cost"


def test_hidden_failures_never_show_expected_values():
    tasks = engine.plan(RUBRIC, ("public", "hidden"))
    item = RUBRIC.item("Q5")
    mine = [t for t in tasks if t.item is item]
    expected = {t.id: ProbeOutput("ok", {}, {"cost": np.float64(2.345678)}) for t in mine}
    wrong = {t.id: ProbeOutput("ok", {}, {"cost": np.float64(9.87)}) for t in mine}
    result = engine.score_item(item, mine, wrong, expected, RUBRIC)
    for check in result.checks:
        if check.visibility == "hidden":
            assert "2.34" not in check.message + check.hint
    assert any("2.34" in c.message for c in result.checks if c.visibility == "public")


def test_the_model_test_labels_stay_in_the_parent():
    tasks = engine.plan(RUBRIC, ("public",))
    model = next(t for t in tasks if t.item.probe == "model")
    assert "test_labels" in model.secret
    assert set(model.inputs) == {"train_images", "train_labels", "test_images"}
    assert len(model.secret["test_labels"]) == len(model.inputs["test_images"]) == 1000


def test_inputs_are_reproducible_and_differ_between_public_and_hidden():
    a = engine.plan(RUBRIC, ("public", "hidden"))
    b = engine.plan(RUBRIC, ("public", "hidden"))
    for ta, tb in zip(a, b):
        for key in ta.inputs:
            assert np.array_equal(ta.inputs[key], tb.inputs[key])
    q5 = {t.visibility: t for t in a if t.item.id == "Q5"}
    assert q5["public"].inputs["Z"].shape != q5["hidden"].inputs["Z"].shape


def test_a_failing_reference_is_ungradable_not_a_zero(tmp_path, monkeypatch, capsys):
    from grader import cli
    broken = tmp_path / "reference.py"
    broken.write_text("def create_placeholders():\n    raise RuntimeError('broken reference')\n")
    monkeypatch.setattr(engine, "REFERENCE_PATH", broken)
    monkeypatch.setattr(engine, "CACHE_DIR", tmp_path / "cache")
    code = cli.main(["check", str(engine.PROJECT_ROOT / "starter" / "tensorflow_tutorial.py"),
                     "--isolation", "basic"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("ungradable: the reference solution fails Q2-")
    assert "broken reference" in err


def test_a_sandbox_that_cannot_start_is_ungradable(monkeypatch, capsys, tmp_path):
    from grader import cli, sandbox

    def refuse(*args, **kwargs):
        raise sandbox.SandboxError("unshare: operation not permitted")
    monkeypatch.setattr(sandbox, "start", refuse)
    monkeypatch.setattr(engine, "CACHE_DIR", tmp_path / "cache")
    code = cli.main(["check", str(engine.PROJECT_ROOT / "starter" / "tensorflow_tutorial.py")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip() == "ungradable: the sandbox cannot start: unshare: operation not permitted"
