"""grader/rubric.py: the whole rubric is validated, every problem with its key path."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grader.errors import RubricError
from grader.rubric import load_rubric, parse_rubric

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = ROOT / "rubric.yaml"


@pytest.fixture()
def raw():
    return yaml.safe_load(RUBRIC.read_text())


def problems(data) -> list[str]:
    with pytest.raises(RubricError) as info:
        parse_rubric(data, Path("rubric.yaml"))
    return str(info.value).splitlines()


def test_the_project_rubric_is_valid_and_worth_100_points():
    rubric = load_rubric(RUBRIC)
    assert [i.id for i in rubric.items] == [f"Q{n}" for n in range(2, 12)] + ["model"]
    assert rubric.max_total == 100
    assert all(i.checks for i in rubric.items)


def test_an_unknown_check_kind_is_named_with_its_key_path(raw):
    raw["questions"][3]["checks"][0]["kind"] = "acc"
    (line,) = problems(raw)
    assert line.startswith("rubric.yaml: questions[3].checks[0].kind: 'acc' is not one of ")
    assert "allclose" in line and "free_text" in line


def test_every_problem_is_reported_at_once(raw):
    raw["seed"] = "secret"
    raw["limits"]["memory_mib"] = 512
    raw["questions"][0]["points"] = -1
    raw["questions"][1]["checks"][2]["diagnoses"] = ["cost_sumed"]
    del raw["questions"][2]["title"]
    raw["questions"][4]["checks"][1]["target"] = 3
    lines = problems(raw)
    text = "\n".join(lines)
    assert len(lines) == 6, text
    assert "seed: 'secret' is a str, expected int" in text
    assert "limits.memory_mib: 512 is below 1280" in text
    assert "questions[0].points: -1 must not be negative" in text
    assert "questions[1].checks[2].diagnoses[0]: 'cost_sumed' is not one of" in text
    assert "questions[2].title: is missing" in text
    assert "questions[4].checks[1].target: 3 is a int, expected str" in text


def test_missing_kind_parameters_and_unknown_keys(raw):
    check = raw["questions"][0]["checks"][0]
    del check["dtype"]
    check["tolerance"] = 0.1
    text = "\n".join(problems(raw))
    assert "questions[0].checks[0].dtype: is missing" in text
    assert "questions[0].checks[0].tolerance: unknown key for a placeholder check" in text


def test_duplicate_ids_bad_visibility_and_probe(raw):
    raw["questions"][1]["id"] = "Q2"
    raw["questions"][2]["checks"][0]["visibility"] = "secret"
    raw["questions"][3]["probe"] = "compute_costs"
    text = "\n".join(problems(raw))
    assert "questions[1].id: 'Q2' appears twice" in text
    assert "questions[2].checks[0].visibility: 'secret' is not one of hidden, public" in text
    assert "questions[3].probe: 'compute_costs' is not one of" in text


def test_free_text_mode_is_checked(raw):
    raw["questions"][9]["checks"][0]["mode"] = "auto"
    assert any("mode: 'auto' is not one of completion, manual" in p for p in problems(raw))


def test_hidden_checks_need_hidden_parameters(raw):
    del raw["questions"][3]["params"]["hidden"]
    assert any("questions[3].params: has no 'hidden' parameters" in p for p in problems(raw))


def test_not_yaml_and_not_a_mapping(tmp_path):
    bad = tmp_path / "rubric.yaml"
    bad.write_text("questions: [\n  - {id: Q2\n")
    with pytest.raises(RubricError, match=r"rubric.yaml: not valid YAML \(line \d+\)"):
        load_rubric(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(RubricError, match="expected a mapping at the top level"):
        load_rubric(bad)
    with pytest.raises(RubricError, match="cannot read the rubric"):
        load_rubric(tmp_path / "missing.yaml")


def test_a_bad_rubric_exits_2_before_any_submission_runs(tmp_path, raw):
    broken = copy.deepcopy(raw)
    broken["questions"][0]["checks"][0]["kind"] = "acc"
    path = tmp_path / "rubric.yaml"
    path.write_text(yaml.safe_dump(broken))
    marker = tmp_path / "ran"
    submission = tmp_path / "tensorflow_tutorial.py"
    submission.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    run = subprocess.run([sys.executable, "-m", "grader", "check", str(submission),
                          "--rubric", str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        "ungradable: rubric.yaml: questions[0].checks[0].kind: 'acc' is not one of "
        + run.stderr.split("is not one of ")[1].strip()]
    assert "Traceback" not in run.stderr
    assert not marker.exists()


def test_gradescope_hidden_visibility_is_checked(raw):
    assert load_rubric(RUBRIC).gradescope_hidden_visibility == "after_published"
    raw["gradescope_hidden_visibility"] = "never"
    (line,) = problems(raw)
    assert line.startswith("rubric.yaml: gradescope_hidden_visibility: 'never' is not one of ")
    raw["gradescope_hidden_visibility"] = "after_due_date"
    assert parse_rubric(raw, Path("rubric.yaml")).gradescope_hidden_visibility == "after_due_date"


def test_checks_must_fit_their_probe_and_its_targets(raw):
    """Validated against the declarations: the probes a kind fits, the targets a probe returns."""
    raw["questions"][3]["checks"][1]["target"] = "grads"
    raw["questions"][3]["checks"][2] = {"name": "prints", "kind": "printed", "weight": 1,
                                        "asked_by": "x"}
    raw["questions"][1]["checks"][0] = {"name": "X", "kind": "placeholder", "target": "X",
                                        "dtype": "float32", "shape": [None, 10], "asked_by": "x"}
    assert problems(raw) == [
        "rubric.yaml: questions[1].checks[0]: check 'placeholder' does not fit probe "
        "'initialize_parameters' (it fits create_placeholders)",
        "rubric.yaml: questions[3].checks[1]: check 'allclose' does not fit probe "
        "'compute_cost' (target 'grads')",
        "rubric.yaml: questions[3].checks[2]: check 'printed' does not fit probe "
        "'compute_cost' (it fits train)"]


def test_a_target_must_be_of_the_sort_the_check_reads(raw):
    """The placeholder check reads a tensor's description, not an array: Q4's Z2 is both."""
    raw["questions"][2]["checks"][1]["target"] = "keys"  # a JSON list, not an array
    assert problems(raw) == ["rubric.yaml: questions[2].checks[1]: check 'allclose' does not "
                             "fit probe 'forward_propagation' (target 'keys')"]


def test_params_are_those_the_probe_declares(raw):
    raw["questions"][3]["params"]["public"] = {"m": "16", "batch": 3}
    del raw["questions"][2]["params"]["hidden"]["n_hidden"]
    raw["questions"][1]["params"]["hidden"]["n_hidden"] = 4.5
    assert problems(raw) == [
        "rubric.yaml: questions[1].params.hidden.n_hidden: 4.5 is a float, expected int or NoneType",
        "rubric.yaml: questions[2].params.hidden.n_hidden: is missing",
        "rubric.yaml: questions[3].params.public.m: '16' is a str, expected int",
        "rubric.yaml: questions[3].params.public.batch: unknown parameter for the compute_cost probe"]


def test_every_probe_is_declared_and_run_by_the_child():
    from grader.inside.runner import PROBES as RUN
    from grader.probes import PROBES
    assert set(PROBES) == set(RUN)
    assert [p for p in PROBES.values() if p.whole] == [PROBES["model"]]
