"""grader/notebook.py and notebook_filter.py: notebooks, and .py files that run code at
import, as students write them (no TensorFlow here).

Their end-to-end grades are in test_cli.py and in the corpus (tests/corpus/notebooks/ and
tests/corpus/toplevel_*.py, with the scores they must get).
"""

from __future__ import annotations

import nbformat

from grader.notebook import (GUARD_NOTE, HEADER, extract, extract_cells, filter_script,
                             is_extracted, line_map, relocate, skipped)
from grader.notebook_filter import available
from tests.conftest import ROOT

REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"


def write(tmp_path, *cells: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# My tutorial")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / "tensorflow_tutorial.ipynb"
    nbformat.write(nb, str(path))
    return path


TUTORIAL_CELLS = (
    "%matplotlib inline\nimport numpy as np\nimport tensorflow.compat.v1 as tf\n"
    "tf.disable_v2_behavior()\nimport matplotlib.pyplot as plt",
    "N_HIDDEN = 128\nSHAPE = (28, 28)\nmnist = load_dataset()\nimages = mnist.train.images\n"
    "print(images.shape)",
    "def initialize_parameters(n_hidden=N_HIDDEN):\n    return n_hidden\n\n"
    "parameters = initialize_parameters()\nfor i in range(20000):\n    sess.run(step)\n"
    "plt.plot(costs)\nIMPROVEMENTS = '''Use dropout.'''.strip()",
    "if __name__ == '__main__':\n    main()\ntry:\n    import seaborn\nexcept ImportError:\n"
    "    seaborn = None",
)


def kept_code(script: str) -> list[str]:
    return [line for line in script.splitlines() if line and not line.startswith("#")]


def test_top_level_tutorial_code_is_skipped_and_definitions_kept(tmp_path):
    script = extract(write(tmp_path, *TUTORIAL_CELLS))
    compile(script, "tensorflow_tutorial.py", "exec")
    code = kept_code(script)
    for kept in ("import numpy as np", "tf.disable_v2_behavior()", "N_HIDDEN = 128",
                 "SHAPE = (28, 28)", "def initialize_parameters(n_hidden=N_HIDDEN):",
                 "IMPROVEMENTS = '''Use dropout.'''.strip()", "if __name__ == '__main__':",
                 "    import seaborn"):
        assert kept in code, kept
    for gone in ("mnist = load_dataset()", "images = mnist.train.images", "print(images.shape)",
                 "parameters = initialize_parameters()", "for i in range(20000):",
                 "    sess.run(step)", "plt.plot(costs)"):
        assert gone not in code, gone
    namespace: dict = {}
    exec(compile(script.replace("import tensorflow.compat.v1 as tf", "import types as tf")
                 .replace("tf.disable_v2_behavior()", "pass")
                 .replace("import matplotlib.pyplot as plt", "plt = None"),
                 "t.py", "exec"), namespace)   # importing it runs nothing of the tutorial
    assert namespace["IMPROVEMENTS"] == "Use dropout." and namespace["N_HIDDEN"] == 128


def test_the_report_notes_say_which_cells_and_lines_and_why(tmp_path):
    notes = skipped(extract(write(tmp_path, *TUTORIAL_CELLS)))
    assert notes == [
        "loads data (1):", "  code cell 2, line 3: mnist = load_dataset()",
        "plots (1):", "  code cell 3, line 7: plt.plot(costs)",
        "prints (1):", "  code cell 2, line 5: print(images.shape)",
        "calls a function at top level (1):",
        "  code cell 3, line 4: parameters = initialize_parameters()",
        "a loop at top level (1):", "  code cell 3, lines 5-6: for i in range(20000): ...",
        "reads the data: run on the grading data instead (1):",
        "  code cell 2, line 4: images = mnist.train.images"]


def test_a_notebook_that_only_defines_things_is_unchanged(tmp_path):
    source = REFERENCE.read_text()
    script = extract(write(tmp_path, source))
    assert skipped(script) == []
    future = "from __future__ import annotations"
    as_before = source.replace(future, "# moved to the top: " + future, 1)
    assert as_before.rstrip("\n") in script and "# skipped" not in script


def test_lines_of_the_script_map_back_to_cells(tmp_path):
    script = extract(write(tmp_path, "import os", "x = 1\n\ndef f():\n    return 1 / 0"))
    mapping = line_map(script)
    lines = script.splitlines()
    number = lines.index("    return 1 / 0") + 1
    assert mapping[number] == (2, 4)
    frame = f"tensorflow_tutorial.py, line {number}, in f: return 1 / 0"
    assert relocate(frame, script, "tensorflow_tutorial.py") == \
        "code cell 2, line 4, in f: return 1 / 0"
    other = f"mnist_loader.py, line {number}, in g: pass"
    assert relocate(other, script, "tensorflow_tutorial.py") == other
    message = f"your file has a syntax error (line {number}): invalid syntax"
    assert relocate(message, script, "tensorflow_tutorial.py") == \
        'your file has a syntax error (code cell 2, line 4: "return 1 / 0"): invalid syntax'


def test_a_cell_with_a_syntax_error_is_kept_for_the_student_to_see(tmp_path):
    script = extract(write(tmp_path, "import os", "def f(:\n    pass", "print('hi')"))
    assert "def f(:" in kept_code(script)
    assert skipped(script) == ["prints (1):", "  code cell 3, line 1: print('hi')"]


# ------------------------------------------------------------ .py files

def unguarded(reference: str) -> str:
    guard = 'if __name__ == "__main__":\n    main()\n'
    assert reference.endswith(guard)
    return reference[: -len(guard)] + "main()\n"


def test_a_py_that_runs_the_tutorial_at_import_is_filtered_with_its_lines_unmoved():
    source = unguarded(REFERENCE.read_text())
    script = filter_script(source, "mine.py")
    assert script is not None and is_extracted(script)
    compile(script, "tensorflow_tutorial.py", "exec")
    lines, mapping = script.splitlines(), line_map(script)
    last = len(source.splitlines())
    assert lines[last + 1] == "# skipped (trains or evaluates): main()"
    assert mapping[last + 2] == (0, last)
    assert all(lines[n + 1] == line for n, line in enumerate(source.splitlines(), start=1)
               if n < last)
    notes = skipped(script)
    assert notes == [GUARD_NOTE, "trains or evaluates (1):", f"  line {last}: main()"]
    frame = f"tensorflow_tutorial.py, line {last + 2}, in main: pass"
    assert relocate(frame, script, "tensorflow_tutorial.py") == f"line {last}, in main: pass"


def test_an_honest_py_is_graded_as_it_is():
    for path in [REFERENCE, ROOT / "starter" / "tensorflow_tutorial.py",
                 *sorted((ROOT / "tests" / "corpus").rglob("*.py"))]:
        if path.stem.startswith("toplevel_"):   # the two habits the filter is for
            continue
        assert filter_script(path.read_text(), path.name) is None, path
    assert filter_script("def f(:\n    pass\nprint(1)\n", "x.py") is None   # a syntax error
    assert filter_script("x = 1\rprint(x)\r", "x.py") is None   # lines Python counts otherwise


# ------------------------------------------------------------ cells as Jupyter names them

def test_cells_are_named_by_their_execution_count_else_counting_code_cells_only(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell("import os", execution_count=3),
                nbformat.v4.new_markdown_cell("## Data"),
                nbformat.v4.new_code_cell("x = 1\nprint(x)", execution_count=7),
                nbformat.v4.new_code_cell("print(2)")]
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, str(path))
    script = extract(path)
    assert skipped(script) == ["prints (2):", "  In [7], line 2: print(x)",
                               "  code cell 3, line 1: print(2)"]
    assert script == extract_cells(["import os", "x = 1\nprint(x)", "print(2)"], "t.ipynb",
                                   [3, 7, None])


def test_a_failure_on_a_name_only_a_skipped_line_sets_names_that_line_and_what_to_do(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell("mnist = load_dataset()\n"
                                          "n_input = mnist.train.next_batch(1)[0].size",
                                          execution_count=7),
                nbformat.v4.new_code_cell("def f():\n    return n_input")]
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, str(path))
    script = extract(path)
    message = "create_placeholders() raised NameError: name 'n_input' is not defined"
    said = relocate(message, script, "tensorflow_tutorial.py")
    assert said == message + (
        " (n_input is set only by In [7], line 2: `n_input = mnist.train.next_batch(1)[0].size`"
        ", which the grader skips (uses the data); compute n_input inside the function that "
        "needs it, or make it a constant)")
    assert relocate(said, script, "tensorflow_tutorial.py") == said   # said once
    other = "f() raised NameError: name 'n_hidden' is not defined"
    assert relocate(other, script, "tensorflow_tutorial.py") == other


# ------------------------------------------------------------ globals read off the data

def test_statements_that_only_read_the_data_are_marked_for_the_grading_data():
    script = extract_cells([
        "data = load_dataset()\nimg_shape = data.train.images.shape[1:]\n"
        "img_size_flat = img_shape[0] * img_shape[1]\nnum_classes = data.train.labels.shape[1]\n"
        "cls = data.test.labels[0:5].argmax(axis=1)\nx = data.train.images\n"
        "x = x.reshape(-1, 784)"])
    lines = script.splitlines()
    assert "# from the grading data (data): img_shape = data.train.images.shape[1:]" in lines
    assert "# from the grading data (): img_size_flat = img_shape[0] * img_shape[1]" in lines
    assert "# from the grading data (data): num_classes = data.train.labels.shape[1]" in lines
    assert "# skipped (uses the data): cls = data.test.labels[0:5].argmax(axis=1)" in lines
    # x is set again by code that cannot run in the child: neither line runs there
    assert "# skipped (uses the data): x = data.train.images" in lines
    assert "# skipped (uses the data): x = x.reshape(-1, 784)" in lines


def test_the_child_runs_them_on_a_stand_in_of_the_grading_data(tmp_path, monkeypatch):
    import sys
    import types

    import numpy as np

    from grader.inside import runner as child_runner
    script = extract_cells([
        "import numpy as np\nmnist = load_dataset()\n"
        "n_input = mnist.train.images.shape[1] * mnist.train.images.shape[2]\n"
        "m = mnist.train.num_examples\ny_test = mnist.test.labels\n"
        "flat = mnist.img_size_flat\ndef f():\n    return n_input\n"
        "def g(n=n_input):\n    return n"], "t.ipynb")
    assert "# from the grading data (): def g(n=n_input):" in script.splitlines()
    (tmp_path / "t.py").write_text(script)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "model.npz", train_images=rng.integers(0, 256, (12, 28, 28), np.uint8),
             train_labels=np.arange(12) % 10, test_images=np.zeros((5, 28, 28), np.uint8))
    job = {"submission": "t.py", "seed": 1,
           "tasks": [{"id": "model", "probe": "model", "inputs": "model.npz"}]}
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "starter"))
    module = types.ModuleType("t")
    exec(compile(script, "t.py", "exec"), module.__dict__)
    assert "n_input" not in module.__dict__
    assert "g" not in module.__dict__   # its default needs the data: defined after the import
    child_runner._bind_grading_data(module, job, np)
    assert (module.n_input, module.m, module.flat, module.f(), module.g()) == (784, 12, 784, 784,
                                                                              784)
    assert "y_test" not in module.__dict__ and "mnist" not in module.__dict__   # no test label
    job["tasks"] = []   # a child without the model item: the shapes, no example
    fresh = types.ModuleType("t")
    exec(compile(script, "t.py", "exec"), fresh.__dict__)
    child_runner._bind_grading_data(fresh, job, np)
    assert (fresh.n_input, fresh.m) == (784, 0)
    assert "tensorflow" not in sys.modules


# ------------------------------------------------------------ packages

def test_an_import_of_a_package_the_grading_environment_lacks_is_skipped():
    assert not available("sklearn") and not available("tensorflow.examples.tutorials.mnist")
    assert available("numpy") and available("os.path") and available("mnist_loader")
    script = extract_cells([
        "import numpy as np\nfrom sklearn.metrics import confusion_matrix\n"
        "from tensorflow.examples.tutorials.mnist import input_data\n"
        "try:\n    import sklearn\nexcept ImportError:\n    sklearn = None\n"
        "def cm(a, b):\n    return confusion_matrix(a, b)"])
    assert skipped(script) == [
        "its package is not available when grading (2):",
        "  code cell 1, line 2: from sklearn.metrics import confusion_matrix",
        "  code cell 1, line 3: from tensorflow.examples.tutorials.mnist import input_data"]
    assert "    import sklearn" in script.splitlines()
    said = relocate("cm() raised NameError: name 'confusion_matrix' is not defined", script,
                    "tensorflow_tutorial.py")
    assert "which the grader skips: its package is not available when grading; " \
           "docs/assignment.md lists the packages that are" in said
    inside = relocate("cm() raised ModuleNotFoundError: No module named 'scipy.misc'", script,
                      "tensorflow_tutorial.py")
    assert inside.endswith("(scipy is not available when grading: docs/assignment.md lists the "
                           "packages that are; use those, or do without it)")


# ------------------------------------------------------------ kept code is inert

INERT_CELLS = (
    "import numpy as np\nimport tensorflow.compat.v1 as tf\nnp.random.seed(1)\n"
    "tf.set_random_seed(1)\nmnist = load_dataset()",
    "def helper(f):\n    raise RuntimeError('ran at import')\n\n"
    "@helper\ndef decorated():\n    pass\n\n"
    "def loads(data=load_dataset()):\n    pass\n\n"
    "def trains(n=helper(1)):\n    pass\n\n"
    "class Prints:\n    print('ran at import')\n\n"
    "class Fine(object):\n    '''A class.'''\n    size = 28 * 28\n"
    "    def f(self, dtype=tf.float32, shape=(None, 784)) -> tf.Tensor:\n        return dtype\n\n"
    "relu = lambda z: helper(z)\n"
    "np.random.seed(mnist.train.num_examples)\ntf.set_random_seed(helper(2))\n"
    "IMPROVEMENTS = ' '.join(['Use', 'dropout.']).strip()\nSTEPS = len(open('x').read())",
)


def test_kept_code_runs_nothing_at_import():
    script = extract_cells(list(INERT_CELLS))
    notes = skipped(script)
    assert notes == [
        "loads data (3):", "  code cell 1, line 5: mnist = load_dataset()",
        "  code cell 2, lines 8-9: def loads(data=load_dataset()): ...",
        "  code cell 2, line 27: STEPS = len(open('x').read())",
        "uses the data (1):", "  code cell 2, line 24: np.random.seed(mnist.train.num_examples)",
        "would run code at import (4):", "  code cell 2, lines 4-6: @helper ...",
        "  code cell 2, lines 11-12: def trains(n=helper(1)): ...",
        "  code cell 2, lines 14-15: class Prints: ...",
        "  code cell 2, line 25: tf.set_random_seed(helper(2))"]
    calls = []
    fake_tf = type("tf", (), {"float32": "float32", "Tensor": object,
                              "set_random_seed": staticmethod(calls.append)})
    namespace = {"load_dataset": lambda: calls.append("load")}
    code = script.replace("import tensorflow.compat.v1 as tf", "tf = fake_tf")
    exec(compile(code, "t.py", "exec"), dict(namespace, fake_tf=fake_tf))
    assert calls == [1]


# ------------------------------------------------------------ the skip list

def test_every_skipped_statement_is_listed_with_its_reason_and_a_long_list_is_counted():
    cells = ["import tensorflow.compat.v1 as tf\ndata = load_dataset()",
             "cost = compute_cost(Z2, Y)\noptimizer = create_train_step(cost)\n"
             "data.test.labels[0:5].argmax(axis=1)\nsess = tf.Session()\nsess.run(optimizer)"]
    notes = skipped(extract_cells(cells))
    assert notes == ["loads data (1):", "  code cell 1, line 2: data = load_dataset()",
                     "uses the data (1):",
                     "  code cell 2, line 3: data.test.labels[0:5].argmax(axis=1)",
                     "trains or evaluates (1):", "  code cell 2, line 5: sess.run(optimizer)",
                     "calls a function at top level (2):",
                     "  code cell 2, line 1: cost = compute_cost(Z2, Y)",
                     "  code cell 2, line 4: sess = tf.Session()",
                     "uses a name only skipped code sets (1):",
                     "  code cell 2, line 2: optimizer = create_train_step(cost)"]
    many = skipped(extract_cells([f"print({i})" for i in range(100)]))
    assert many[0] == "prints (100):" and len(many) == 101   # no cut
    more = skipped(extract_cells([f"print({i})\nplt.plot({i})" for i in range(150)]))
    assert more[0] == "plots (150):" and more[51] == "  100 more statements like these"
    assert more[52] == "prints (150):" and len(more) == 2 * 52


def test_self_check_lines_are_skipped_as_such():
    script = extract_cells(["import grader\nfrom grader import check\nimport grader.selfcheck",
                            "def f():\n    return 1\ncheck('Q5')\ngrader.check('Q6')"])
    assert skipped(script) == ["self-check (5):", "  code cell 1, line 1: import grader",
                               "  code cell 1, line 2: from grader import check",
                               "  code cell 1, line 3: import grader.selfcheck",
                               "  code cell 2, line 3: check('Q5')",
                               "  code cell 2, line 4: grader.check('Q6')"]
    assert "def f():" in script.splitlines()


def test_a_forged_script_cannot_make_the_skip_list_long():
    forged = HEADER + "x\n# %% cell 1\n" + "".join(f"# skipped (reason {i}): x = {i}\n"
                                                     for i in range(10000))
    notes = skipped(forged)
    assert notes[0] == "runs at top level (10000):" and len(notes) == 102
