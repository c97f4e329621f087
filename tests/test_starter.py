"""Tests for starter/tensorflow_tutorial.py, and the contract shared with the reference.

The contract checks parse the files with `ast`; the one test that needs
TensorFlow runs in a subprocess.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import tutorial_env

import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTER = ROOT / "starter" / "tensorflow_tutorial.py"
REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"

# The contract of ASSIGNMENT.md: every function a submission defines, in order.
CONTRACT = [
    "load_dataset(path=None)",
    "create_placeholders()",
    "initialize_parameters(n_hidden=128)",
    "forward_propagation(X, parameters)",
    "compute_cost(Z2, Y)",
    "compute_accuracy(Z2, Y)",
    "create_train_step(cost, learning_rate=0.001)",
    "initialize_session()",
    "train(sess, train_step, cost, X, Y, mnist, num_steps=20000, batch_size=100, print_every=1000)",
    "evaluate(sess, cost, accuracy, X, Y, images, labels)",
]
QUESTIONS = {signature.split("(")[0]: f"Q{number}" for number, signature in enumerate(CONTRACT, start=1)}


def signature(function: ast.FunctionDef) -> str:
    """`name(a, b=default)` as written in the source."""
    args = function.args
    assert not (args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg), function.name
    defaults = [None] * (len(args.args) - len(args.defaults)) + args.defaults
    parts = [arg.arg if default is None else f"{arg.arg}={ast.unparse(default)}"
             for arg, default in zip(args.args, defaults)]
    return f"{function.name}({', '.join(parts)})"


def public_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [signature(node) for node in tree.body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]


def improvements(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    values = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "IMPROVEMENTS" for t in node.targets)]
    assert len(values) == 1, f"{path}: IMPROVEMENTS should be assigned once, at module level"
    return values[0]


@pytest.mark.parametrize("path", [STARTER, REFERENCE], ids=["starter", "reference"])
def test_defines_exactly_the_contract(path):
    functions = public_functions(path)
    assert functions[-1] == "main(argv=None)"
    assert functions[:-1] == CONTRACT


def test_improvements_is_empty_in_the_starter_and_answered_in_the_reference():
    assert improvements(STARTER) == ""
    answer = improvements(REFERENCE)
    assert isinstance(answer, str) and len(answer.split()) > 50


def test_starter_marks_where_each_answer_goes():
    tree = ast.parse(STARTER.read_text())
    source_lines = STARTER.read_text().splitlines()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in QUESTIONS and node.name != "load_dataset":
            assert ast.get_docstring(node), f"{node.name} needs a docstring"
            body = source_lines[node.body[1].lineno - 2:node.end_lineno]
            assert body[0].strip() == "# YOUR CODE HERE", node.name
            expected = f'raise NotImplementedError("{QUESTIONS[node.name]} {node.name}: write your code here")'
            assert body[1].strip() == expected, node.name


SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
start = time.time()
import tensorflow_tutorial as t
import_seconds = time.time() - start
import tensorflow.compat.v1 as tf
graph_ops = len(tf.get_default_graph().get_operations())
print("--- imported ---", flush=True)

calls = {
    "create_placeholders": lambda: t.create_placeholders(),
    "initialize_parameters": lambda: t.initialize_parameters(),
    "forward_propagation": lambda: t.forward_propagation(X, {}),
    "compute_cost": lambda: t.compute_cost(X, X),
    "compute_accuracy": lambda: t.compute_accuracy(X, X),
    "create_train_step": lambda: t.create_train_step(X),
    "initialize_session": lambda: t.initialize_session(),
    "train": lambda: t.train(None, None, None, X, X, None, num_steps=1),
    "evaluate": lambda: t.evaluate(None, None, None, X, X, None, None),
}
X = tf.placeholder(tf.float32, [None, 10])
raised = {}
for name, call in calls.items():
    try:
        call()
        raised[name] = ["nothing", ""]
    except BaseException as exc:
        raised[name] = [type(exc).__name__, str(exc)]

mnist = t.load_dataset()
dataset = {
    "train": [mnist.train.num_examples, list(mnist.train.images.shape), str(mnist.train.images.dtype),
              list(mnist.train.labels.shape)],
    "test": [mnist.test.num_examples, list(mnist.test.images.shape)],
    "batch": [list(a.shape) for a in mnist.train.next_batch(100)],
}
print(json.dumps({"import_seconds": import_seconds, "graph_ops": graph_ops, "raised": raised,
                  "improvements": t.IMPROVEMENTS, "dataset": dataset}))
"""


def test_starter_imports_quietly_and_every_question_is_unanswered(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(STARTER.parent)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path, env=tutorial_env(tmp_path))
    assert result.returncode == 0, result.stderr
    before, marker, after = result.stdout.partition("--- imported ---\n")
    assert marker and before == "", f"importing the starter printed {before!r}"
    assert result.stderr == "", f"importing the starter wrote to stderr: {result.stderr!r}"
    report = json.loads(after.splitlines()[-1])
    assert report["graph_ops"] == 0, "importing the starter should build nothing"
    assert report["import_seconds"] < 60

    for name, (kind, message) in report["raised"].items():
        assert kind == "NotImplementedError", f"{name} raised {kind}: {message}"
        assert message == f"{QUESTIONS[name]} {name}: write your code here"
    assert set(report["raised"]) == set(QUESTIONS) - {"load_dataset"}
    assert report["improvements"] == ""

    assert after.splitlines()[0].startswith("MNIST: offline subset")
    assert report["dataset"] == {
        "train": [4000, [4000, 28, 28], "float32", [4000, 10]],
        "test": [1000, [1000, 28, 28]],
        "batch": [[100, 28, 28], [100, 10]],
    }
