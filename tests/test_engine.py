"""grader/engine.py: what the parent accepts from a child, and how it scores it.

The child's files are forged by hand here, as a hostile submission could
forge them: the parent must accept only plain numeric arrays and plain JSON.
"""

import os
from dataclasses import replace

import numpy as np
import pytest

from grader import config, engine
from grader.checks import CHECKS
from grader.errors import UngradableError
from grader.outcome import ProbeOutput
from grader.report import HIDDEN_FAILED
from grader.rubric import load_rubric

RUBRIC = load_rubric(engine.PROJECT_ROOT / "rubric.yaml")


def test_saved_results_round_trip_and_are_never_followed_through_links(tmp_path):
    tasks = [t for t in engine.plan(RUBRIC, ("public",)) if t.item.id == "Q5"]
    out = ProbeOutput("ok", {"cost": {"dtype": "float32"}}, {"cost": np.float64(2.5)})
    engine.save_outputs(tmp_path, tasks, {tasks[0].id: out})
    back = engine.read_result_file(tmp_path / f"{tasks[0].id}.result", tasks[0].id)
    assert back.ok and back.meta == out.meta and float(back.array("cost")) == 2.5
    # a result saved under another task's name is not this task's
    assert engine.read_result_file(tmp_path / f"{tasks[0].id}.result", "Q6-public") is None
    link = tmp_path / "link.result"
    os.symlink(tmp_path / f"{tasks[0].id}.result", link)
    assert engine.read_result_file(link, tasks[0].id) is None
    os.mkfifo(tmp_path / "fifo.result")
    assert engine.read_result_file(tmp_path / "fifo.result", tasks[0].id) is None  # no block


def test_an_error_report_becomes_the_items_error():
    out = engine.output_from_result({"error": {"message": "forward_propagation() raised X",
                                               "traceback": "tensorflow_tutorial.py, line 3"}}, {})
    assert out.status == "error" and "raised X" in out.message
    forged = engine.output_from_result({"error": {"message": ["not", "text"]}}, {})
    assert forged.status == "error" and forged.message == engine.UNREADABLE


def test_child_seeds_are_derived_and_never_the_rubrics():
    seeds = {engine.child_seed(RUBRIC.seed, t.id) for t in engine.plan(RUBRIC, ("hidden",))}
    assert RUBRIC.seed not in seeds and len(seeds) > 1
    assert engine.child_seed(RUBRIC.seed, "Q5-hidden") == engine.child_seed(RUBRIC.seed, "Q5-hidden")


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
            if check.status == "failed":  # a generic message is marked, and names no mistake
                assert check.generic == (check.message == HIDDEN_FAILED)
                assert check.mistake == ("" if check.generic else check.message)
    assert any("2.34" in c.message for c in result.checks if c.visibility == "public")


def test_the_model_test_split_stays_in_the_parent():
    """The child trains and sends its parameters; no test image or label enters it."""
    tasks = engine.plan(RUBRIC, ("public",))
    model = next(t for t in tasks if t.item.probe == "model")
    assert set(model.secret) == {"test_images", "test_labels"}
    assert set(model.inputs) == {"train_images", "train_labels"}
    assert len(model.secret["test_labels"]) == len(model.secret["test_images"]) == 1000
    test = {np.ascontiguousarray(image).tobytes() for image in model.secret["test_images"]}
    assert not any(np.ascontiguousarray(image).tobytes() in test
                   for image in model.inputs["train_images"][:2000])


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
    monkeypatch.setattr(config, "CONFIG", replace(config.CONFIG, reference=broken,
                                                  cache_dir=tmp_path / "cache"))
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
    monkeypatch.setattr(sandbox, "start_forked", refuse)  # children forked from the zygote
    monkeypatch.setattr(config, "CONFIG", replace(config.CONFIG, cache_dir=tmp_path / "cache"))
    code = cli.main(["check", str(engine.PROJECT_ROOT / "starter" / "tensorflow_tutorial.py")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip() == "ungradable: the sandbox cannot start: unshare: operation not permitted"


# ------------------------------------------------- grader faults and declared targets

def _q5(value=np.float64(2.0)):
    tasks = [t for t in engine.plan(RUBRIC, ("public", "hidden")) if t.item.id == "Q5"]
    outputs = {t.id: ProbeOutput("ok", {"cost": {"dtype": "float32"}}, {"cost": value})
               for t in tasks}
    return RUBRIC.item("Q5"), tasks, outputs


def _raising(monkeypatch, kind: str = "allclose"):
    def boom(ctx):
        raise ZeroDivisionError("a grader bug")
    monkeypatch.setitem(CHECKS, kind, replace(CHECKS[kind], fn=boom))


def test_a_check_that_raises_is_a_grader_fault_never_a_score(monkeypatch):
    item, tasks, outputs = _q5()
    _raising(monkeypatch)
    with pytest.raises(UngradableError) as info:
        engine.score_item(item, tasks, outputs, outputs, RUBRIC)
    assert str(info.value).startswith("check 'the mean softmax cross-entropy' (allclose) of Q5 "
                                      "raised ZeroDivisionError: a grader bug")


def test_a_check_that_raises_exits_2_with_one_ungradable_line(monkeypatch, capsys, tmp_path):
    """The whole path of `python -m grader check`, with recorded probe outputs."""
    from grader import cli
    item, tasks, outputs = _q5()
    _raising(monkeypatch)
    monkeypatch.setenv("GRADER_STARTUP", "fresh")

    def recorded(rubric, tasks, workroot):
        return {t.id: outputs.get(t.id, ProbeOutput("ok")) for t in tasks}

    def probed(source, tasks, *args, **kwargs):
        return engine.Probed(recorded(None, tasks, None), "basic", "", "fresh")
    monkeypatch.setattr(engine, "expected_outputs", recorded)
    monkeypatch.setattr(engine, "probe", probed)
    code = cli.main(["check", str(engine.PROJECT_ROOT / "starter" / "tensorflow_tutorial.py")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("ungradable: check ") and len(err.strip().splitlines()) == 1


def test_a_reference_check_without_a_reference_output_is_a_grader_fault():
    item, tasks, outputs = _q5()
    with pytest.raises(UngradableError, match="no reference output for Q5-public"):
        engine.score_item(item, tasks, outputs, {}, RUBRIC)


@pytest.mark.parametrize("value, why", [
    (np.array([True]), "cost is bool, not float numbers"),
    (None, "compute_cost sent no cost"),
])
def test_a_target_of_the_wrong_kind_is_the_students_error(value, why):
    item, tasks, expected = _q5()
    got = {t.id: ProbeOutput("ok", {}, {} if value is None else {"cost": value}) for t in tasks}
    result = engine.score_item(item, tasks, got, expected, RUBRIC)
    assert result.status == "error" and result.score == 0
    assert result.feedback == f"{engine.UNREADABLE}: {why}"


def test_no_value_a_declaration_admits_makes_a_check_raise(tmp_path):
    """A hostile child cannot make itself ungradable: each array of the reference's real
    results, replaced by what a child may send instead (empty, NaN, inf, huge, another
    shape, another dtype), is scored, never a grader fault."""
    import warnings
    tasks = engine.plan(RUBRIC, ("public", "hidden"))
    expected = engine.expected_outputs(RUBRIC, tasks, tmp_path)

    def variants(a):
        yield np.array([], a.dtype if a.dtype.kind in "fiub" else np.float32)
        if a.dtype.kind == "f":
            yield from (np.full(a.shape, np.nan, a.dtype), np.full(a.shape, np.inf, a.dtype),
                        np.full(a.shape, 1e300, np.float64))
        yield from (a.reshape(-1), a.reshape(1, *a.shape), np.zeros((3, 5, 7), np.float32),
                    a.astype(np.int64), np.zeros((), np.float32))
    scored = 0
    for task in tasks:
        base = expected[task.id]
        mine = [t for t in tasks if t.item is task.item]
        for key, array in base.arrays.items():
            for value in variants(np.asarray(array)):
                got = dict(expected)
                got[task.id] = ProbeOutput("ok", dict(base.meta), {**base.arrays, key: value})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    engine.score_item(task.item, mine, got, expected, RUBRIC)  # raises on a fault
                scored += 1
    assert scored > 200


def test_a_ray_tasks_share_of_the_cores_is_what_a_grade_counts_on(monkeypatch):
    """A Ray task is granted one CPU of its node: its grade must not plan on the
    machine's cores (the model item in a child of its own beside the others)."""
    from grader import supervise
    monkeypatch.setattr(supervise, "_core_limit", None)
    machine = supervise._cores()
    assert machine == len(os.sched_getaffinity(0))
    supervise.limit_cores(1)
    assert supervise._cores() == 1
    supervise.limit_cores(0)      # a fraction of a CPU (Ray allows 0.5): still one
    assert supervise._cores() == 1
    supervise.limit_cores(None)
    assert supervise._cores() == machine
