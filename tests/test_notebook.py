"""grader/notebook.py: notebooks as students write them (no TensorFlow here).

The end-to-end grade of such a notebook is in test_cli.py.
"""

from __future__ import annotations

import nbformat

from grader.notebook import extract, line_map, relocate, skipped
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
    assert "cell 3, line 3 (loads data: load_dataset()): mnist = load_dataset()" in notes
    assert "cell 3, line 4 (uses mnist, which skipped code sets): images = mnist.train.images" \
        in notes
    assert "cell 3, line 5 (prints): print(images.shape)" in notes
    assert "cell 4, lines 5-6 (a loop at top level): for i in range(20000):" in notes
    assert "cell 4, line 7 (plots): plt.plot(costs)" in notes
    assert len(notes) == 6


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
    assert mapping[number] == (3, 4)
    frame = f"tensorflow_tutorial.py, line {number}, in f: return 1 / 0"
    assert relocate(frame, script, "tensorflow_tutorial.py") == "cell 3, line 4, in f: return 1 / 0"
    other = f"mnist_loader.py, line {number}, in g: pass"
    assert relocate(other, script, "tensorflow_tutorial.py") == other
    message = f"your file has a syntax error (line {number}): invalid syntax"
    assert relocate(message, script, "tensorflow_tutorial.py") == \
        'your file has a syntax error (cell 3, line 4: "return 1 / 0"): invalid syntax'


def test_a_cell_with_a_syntax_error_is_kept_for_the_student_to_see(tmp_path):
    script = extract(write(tmp_path, "import os", "def f(:\n    pass", "print('hi')"))
    assert "def f(:" in kept_code(script)
    assert skipped(script) == ["cell 4, line 1 (prints): print('hi')"]
