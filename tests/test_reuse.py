"""grader/reuse.py: a re-grade (watch, check in a kernel) reuses the ``model`` result only
while the code that item can reach is unchanged.

The key tests read no TensorFlow; the grades (``tf``) run the reference in children.
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest
import yaml

from grader import engine, reuse
from grader.outcome import ProbeOutput
from grader.report import to_dict
from grader.rubric import load_rubric

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "reference" / "tensorflow_tutorial.py").read_text()
RUBRIC = load_rubric(ROOT / "rubric.yaml")
MODEL = next(t for t in engine.plan(RUBRIC, ("public",)) if t.item.id == "model")


def key(text: str):
    return reuse.model_key(text, MODEL)


def edited(function: str, line: str = "unused_local = 1", text: str = REFERENCE) -> str:
    head = next(ln for ln in text.splitlines() if ln.startswith(f"def {function}("))
    assert text.count(head) == 1
    return text.replace(head, f"{head}\n    {line}")


# ------------------------------------------------------------------ the key

def test_what_the_model_cannot_reach_does_not_change_its_key():
    base = key(REFERENCE)
    assert base is not None
    assert key(REFERENCE + "\n# a comment\n\n") == base            # comments, blank lines
    assert key("\n\n" + REFERENCE) == base                         # positions
    assert key(edited("evaluate")) == base                         # Q10: not called
    assert key(edited("compute_accuracy")) == base                 # Q6: not called
    assert key(REFERENCE.replace('IMPROVEMENTS = """', 'IMPROVEMENTS = """More. ')) == base
    assert key(REFERENCE.replace("def train(", "UNUSED = (1, 2)\n\n\ndef train(")) == base


@pytest.mark.parametrize("function", reuse.MODEL_CALLS)
def test_every_function_the_model_calls_is_in_its_key(function):
    assert key(edited(function)) != key(REFERENCE)


def test_what_those_functions_reach_is_in_the_key():
    helper = "\n\ndef _scale():\n    return 0.01\n"
    text = edited("initialize_parameters", "_unused = _scale()", REFERENCE + helper)
    changed = text.replace("return 0.01", "return 0.02")
    assert key(text) is not None and key(changed) != key(text)
    # a literal the pipeline reads, a class, an import: in the key
    rate = edited("create_train_step", "_r = RATE", REFERENCE + "\nRATE = 3\n")
    assert key(rate) != key(rate.replace("RATE = 3", "RATE = 4"))
    assert key(REFERENCE + "\nclass Unused:\n    pass\n") != key(REFERENCE)
    assert key("import json\n" + REFERENCE) != key(REFERENCE)


def test_state_another_function_changes_keeps_that_function_in_the_key():
    text = REFERENCE + "\nSEEN = []\n\n\ndef note():\n    SEEN.append(1)\n"
    text = edited("train", "_n = len(SEEN)", text)
    assert key(text.replace("SEEN.append(1)", "SEEN.append(2)")) != key(text)


def test_what_runs_at_import_is_in_the_key_and_the_main_block_is_not():
    head = "def evaluate(sess, cost, accuracy, X, Y, images, labels):"
    assert key(REFERENCE.replace(head, head.replace("labels)", "labels=print('x'))"))) != \
        key(REFERENCE)                                             # a default runs at import
    assert key(REFERENCE + '\nif __name__ == "__main__":\n    print(1)\n') == key(REFERENCE)
    marker = "# from the grading data (mnist): n = mnist.train.num_examples\n"
    assert key(REFERENCE + marker) != key(REFERENCE)               # the child runs these lines


@pytest.mark.parametrize("line", [
    "_f = globals()['compute_cost']", "_f = getattr(object, 'x')", "exec('x = 1')",
    "import sys; _m = sys.modules", "import inspect", "global SEEN", "import importlib",
])
def test_code_reached_by_a_computed_name_is_never_reused(line):
    assert key(edited("evaluate", line)) is None


def test_a_file_that_cannot_be_parsed_or_is_too_large_is_never_reused():
    assert key(REFERENCE + "\ndef broken(:\n") is None
    assert key(REFERENCE + "#" * reuse.MAX_SOURCE) is None


def test_the_calls_named_are_the_ones_the_child_makes():
    """MODEL_CALLS against grader/inside/probes.py: every h.call("name") that probe_model
    reaches through the probes' own helpers."""
    tree = ast.parse((ROOT / "grader" / "inside" / "probes.py").read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    calls, seen, todo = set(), set(), ["probe_model"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for sub in ast.walk(functions[name]):
            if isinstance(sub, ast.Call):
                if (isinstance(sub.func, ast.Attribute) and sub.func.attr == "call" and sub.args
                        and isinstance(sub.args[0], ast.Constant)):
                    calls.add(sub.args[0].value)
                elif isinstance(sub.func, ast.Name) and sub.func.id in functions:
                    todo.append(sub.func.id)
    assert calls == set(reuse.MODEL_CALLS)


def test_only_successes_are_kept_and_only_a_few():
    kept = reuse.ModelReuse()
    ok = ProbeOutput("ok", meta={"learning_rate": 0.001})
    kept.store({"model-public": "a"}, {"model-public": ProbeOutput.failure("error", "boom")})
    assert kept.lookup({"model-public": "a"}) == {}
    for i in range(reuse.MAX_KEPT + 1):
        kept.store({"model-public": str(i)}, {"model-public": ok})
    assert kept.lookup({"model-public": "0"}) == {}                # the oldest went
    assert kept.lookup({"model-public": "1"}) == {"model-public": ok}
    assert kept.reused == 1


# ------------------------------------------------------------------ grades

def _rubric(tmp_path: Path, q5_budget: int = 60):
    data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
    for item in data["questions"]:
        item["budget_seconds"] = 240 if item["id"] == "model" else q5_budget \
            if item["id"] == "Q5" else 60
        if item["id"] == "model":  # 300 steps: the reference still passes
            item["params"]["public"]["steps"] = 300
    path = tmp_path / f"rubric-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_rubric(path)


def _file(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name / "tensorflow_tutorial.py"
    path.parent.mkdir()
    path.write_text(text)
    return path


def _model(report) -> dict:
    return next(q for q in to_dict(report)["questions"] if q["id"] == "model")


@pytest.mark.tf
def test_a_regrade_reuses_the_model_only_while_its_code_is_unchanged(tmp_path):
    rubric = _rubric(tmp_path)
    kept = reuse.ModelReuse()
    first = engine.grade(_file(tmp_path, REFERENCE, "a"), rubric, ("public",), reuse=kept)
    assert first.total == first.max_total and kept.reused == 0
    # Q10 edited (a mistake): the model's result is reused, and the report is the one a
    # grade without reuse gives
    wrong = REFERENCE.replace("return float(cost_value), float(accuracy_value)",
                              "return float(accuracy_value), float(cost_value)")
    assert wrong != REFERENCE
    path = _file(tmp_path, wrong, "b")
    again = engine.grade(path, rubric, ("public",), reuse=kept)
    assert kept.reused == 1
    plain = engine.grade(path, rubric, ("public",))
    assert json.dumps(to_dict(again), sort_keys=True).replace(str(path), "") == \
        json.dumps(to_dict(plain), sort_keys=True).replace(str(path), "")
    assert _model(again)["score"] == _model(first)["score"] > 0
    # the pipeline edited: trained again
    engine.grade(_file(tmp_path, edited("compute_cost", "_x = 1", REFERENCE), "c"), rubric,
                 ("public",), reuse=kept)
    assert kept.reused == 1


@pytest.mark.tf
def test_a_reused_model_gets_the_failure_the_one_child_order_gives(tmp_path):
    """A pipeline function that now hangs in an earlier item: in one child the model
    would not run, so a reused result is not shown either."""
    rubric = _rubric(tmp_path, q5_budget=3)
    hang = REFERENCE.replace("def compute_cost(Z2, Y):",
                             "def compute_cost(Z2, Y):\n    while Z2.op.type == 'Placeholder':\n"
                             "        pass")
    path = _file(tmp_path, hang, "hang")
    model = next(t for t in engine.plan(rubric, ("public",)) if t.item.id == "model")
    kept = reuse.ModelReuse()
    kept.store({model.id: "k"}, {model.id: ProbeOutput("ok", arrays={})})
    kept.keys = lambda source, tasks: {model.id: "k"}   # as if its code had not changed
    report = engine.grade(path, rubric, ("public",), reuse=kept)
    assert kept.reused == 1
    assert "not run: compute_cost() timed out in Q5" in json.dumps(_model(report))
