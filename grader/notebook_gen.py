"""The tutorial as a Jupyter notebook, generated from its script (one source).

``python -m grader.notebook_gen`` writes ``starter/tensorflow_tutorial.ipynb``
from ``starter/tensorflow_tutorial.py`` and ``reference/tensorflow_tutorial.ipynb``
from the reference script. A notebook holds, in the script's order:

- the script's docstring, as the first markdown cell;
- a cell that puts the bundle folder (the grader) and ``starter/`` (the MNIST
  loader) on ``sys.path``, then the script's imports;
- a cell ``from grader import check`` that says how to check a question;
- per question, a markdown heading (with the script's comments under its
  ``# Qn ----`` line), the question's code, then a cell ``check("Qn")``;
- instead of the script's ``main()``, the tutorial at top level: load the
  data, build the network, train (``TUTORIAL_STEPS`` steps, 20,000 unless that
  environment variable says otherwise), plot the cost, print the accuracies.

The output depends on the script alone (cell ids are numbered, keys sorted):
the same script gives the same bytes, so a test regenerates the notebooks and
compares them with the committed ones.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

__all__ = ["SECTION", "generate", "main", "notebook_json", "sections"]

ROOT = Path(__file__).resolve().parent.parent
PAIRS = (("starter", "tensorflow_tutorial"), ("reference", "tensorflow_tutorial"))
SECTION = re.compile(r"^# (?P<title>(?P<question>Q\d+)\b.*?|The whole tutorial.*?)\s*-{3,}\s*$")
STEPS_VARIABLE = "TUTORIAL_STEPS"

PATHS_CELL = '''\
# The grader and the MNIST loader live in the bundle folder, one level up
# (Jupyter starts this notebook's kernel in the notebook's own folder).
import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath(os.path.join("..", "starter")))'''

CHECK_INTRO = """\
## Checking your answers as you go

`check("Q5")` grades the functions this notebook's kernel holds now (the
cells you have run, the last definition of each name winning) on Q5's public
checks, in a separate sandboxed process, and shows the same rows as
`make grade`. `check()` grades every question. The first call takes a few
seconds (it starts TensorFlow once); the next ones about a second. A question
that is `ok` here can still lose the hidden share of its points at grading."""

CHECK_CELL = "from grader import check"

TUTORIAL_INTRO = """\
## The whole tutorial

Once every question is answered, these cells load the data, build the
network, train it, plot the cost and print the accuracies. The grader does
not run them: it calls your functions itself. Training takes a few minutes
for 20,000 steps; set the environment variable `TUTORIAL_STEPS` (or edit
`NUM_STEPS`) for a quicker try."""

TUTORIAL_CELLS = (
    """\
mnist = load_dataset()   # Q1""",
    """\
tf.reset_default_graph()
tf.set_random_seed(0)
X, Y = create_placeholders()                        # Q2
parameters = initialize_parameters(128)             # Q3
Z2, A2 = forward_propagation(X, parameters)         # Q4
cost = compute_cost(Z2, Y)                          # Q5
accuracy = compute_accuracy(Z2, Y)                  # Q6
train_step = create_train_step(cost, 0.001)         # Q7
sess = initialize_session()                         # Q8""",
    f"""\
NUM_STEPS = int(os.environ.get("{STEPS_VARIABLE}", "20000"))
start = time.time()
costs = train(sess, train_step, cost, X, Y, mnist, num_steps=NUM_STEPS,  # Q9
              batch_size=100, print_every=max(1, NUM_STEPS // 20))
print(f"Trained {{NUM_STEPS}} steps in {{time.time() - start:.1f}} s")""",
    """\
def plot_costs(costs):
    \"\"\"The cost of every training step, on a log scale.\"\"\"
    import matplotlib.pyplot as plt

    plt.figure(figsize=(7, 3.5))
    plt.plot(costs)
    plt.yscale("log")
    plt.xlabel("iteration")
    plt.ylabel("cost")
    plt.title("Training cost")
    plt.show()


plot_costs(costs)""",
    """\
for name, split in (("Train", mnist.train), ("Test", mnist.test)):  # Q10
    split_cost, split_accuracy = evaluate(sess, cost, accuracy, X, Y, split.images, split.labels)
    print(f"{name} cost = {split_cost:.4f}, {name.lower()} accuracy = {split_accuracy:.4f}")""",
)


def sections(source: str) -> tuple[str, str, list[tuple[str, str, str, str]]]:
    """(docstring, imports, [(title, question or "", comments, code)]) of a tutorial script."""
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree, clean=True) or ""
    lines = source.splitlines()
    body_start = tree.body[1].lineno - 1 if ast.get_docstring(tree) else 0
    marks = [(i, SECTION.match(line)) for i, line in enumerate(lines) if SECTION.match(line)]
    if not marks:
        raise ValueError("no '# Qn ----' section in the script")
    imports = "\n".join(lines[body_start:marks[0][0]]).strip("\n")
    out = []
    for n, (start, match) in enumerate(marks):
        end = marks[n + 1][0] if n + 1 < len(marks) else len(lines)
        block = lines[start + 1:end]
        while block and not block[0].strip():
            block.pop(0)
        comments = []
        while block and block[0].startswith("#"):
            comments.append(block.pop(0)[1:].strip())
        out.append((match.group("title"), match.group("question") or "", " ".join(comments),
                    "\n".join(block).strip("\n")))
    return docstring, imports, out


def _markdown_docstring(docstring: str) -> str:
    title, _, rest = docstring.partition("\n")
    return f"# {title.strip()}\n\n{rest.strip()}".rstrip()


def _cell(kind: str, source: str, number: int) -> dict:
    cell = {"cell_type": kind, "id": f"cell-{number:02d}", "metadata": {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def notebook_json(script: str, name: str) -> str:
    """The notebook of the tutorial script whose text is ``script``, as JSON text."""
    docstring, imports, parts = sections(script)
    cells: list[tuple[str, str]] = [("markdown", _markdown_docstring(docstring)),
                                    ("code", PATHS_CELL), ("code", imports),
                                    ("markdown", CHECK_INTRO), ("code", CHECK_CELL)]
    for title, question, comments, code in parts:
        if not question:
            cells.append(("markdown", TUTORIAL_INTRO))
            cells.extend(("code", c) for c in TUTORIAL_CELLS)
            continue
        heading = f"## {title}" + (f"\n\n{comments}" if comments else "")
        cells += [("markdown", heading), ("code", code)]
        if question != "Q1":
            cells.append(("code", f'check("{question}")'))
    notebook = {
        "cells": [_cell(kind, text, i) for i, (kind, text) in enumerate(cells, start=1)],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"},
                     "language_info": {"name": "python"},
                     "tutorial": {"generated_from": f"{name}.py"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def generate(folder: str, name: str, root: Path = ROOT) -> tuple[Path, str]:
    """(path of the notebook, its text) for ``root/folder/name.py``."""
    script = root / folder / f"{name}.py"
    return script.with_suffix(".ipynb"), notebook_json(script.read_text(encoding="utf-8"), name)


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) every notebook; 1 when one is out of date."""
    check_only = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = 0
    for folder, name in PAIRS:
        path, text = generate(folder, name)
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        if check_only:
            print(f"{path.relative_to(ROOT)}: out of date (python -m grader.notebook_gen)")
            stale += 1
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
