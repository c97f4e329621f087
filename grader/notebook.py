"""Turn a Jupyter notebook into the Python file the grader imports.

The code cells are kept, in order, each after a ``# %% cell N`` comment so that
a line number in the feedback can be found in the notebook.  What only
IPython understands is removed, each removed line replaced by ``pass`` (so
that an indented block stays valid) with the original text in a comment:

- line magics (``%matplotlib inline``) and shell escapes (``!pip install ...``),
  also when their result is assigned (``files = !ls``), with their ``\\``
  continuation lines;
- cell magics: ``%%time``, ``%%timeit``, ``%%capture`` and ``%%prun`` run Python,
  so only their first line goes; any other (``%%bash``, ``%%writefile``, ...)
  removes the whole cell;
- help requests (``tf.reshape?``, ``??np``) and ``get_ipython()`` calls.

``from __future__`` imports, valid in any cell of a notebook, are moved to the
top of the file, the only place Python accepts them.

A cell that already compiles as Python is kept exactly as it is.  A cell with
a magic *and* a string or expression whose own line starts with ``%`` or ``!``
may come out wrong: that is rare enough in this assignment to accept.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

__all__ = ["NotebookError", "extract"]

PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})
_ASSIGNED_ESCAPE = re.compile(r"^\s*[A-Za-z_][\w.,\s]*=\s*[!%]")
_HELP = re.compile(r"^\s*(\?{1,2}[\w.]+|[\w.]+\?{1,2})\s*$")
_FUTURE = re.compile(r"^from\s+__future__\s+import\s+[^#;]+$")


class NotebookError(Exception):
    """The file is not a notebook that nbformat can read."""


def _compiles(source: str) -> bool:
    try:
        compile(source, "<cell>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def _is_ipython_line(line: str) -> bool:
    stripped = line.lstrip()
    return (stripped.startswith(("%", "!")) or bool(_ASSIGNED_ESCAPE.match(line))
            or bool(_HELP.match(line)) or stripped.startswith("get_ipython()"))


def _removed(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    return f"{indent}pass  # removed: {line.strip()}"


def _clean_cell(source: str) -> str | None:
    """The cell as plain Python, or None when the whole cell is not Python."""
    lines = source.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return ""
    head = lines[first].strip()
    if head.startswith("%%"):
        name = head[2:].split(maxsplit=1)[0] if len(head) > 2 else ""
        if name not in PYTHON_CELL_MAGICS:
            return None
        lines[first] = "# removed: " + head
    text = "\n".join(lines)
    if _compiles(text):
        return text
    out, continued = [], False
    for line in lines:
        if continued:
            out.append("# removed: " + line.strip())
            continued = line.rstrip().endswith("\\")
        elif _is_ipython_line(line):
            out.append(_removed(line))
            continued = line.rstrip().endswith("\\")
        else:
            out.append(line)
    return "\n".join(out)


def extract(path: Path) -> str:
    """The Python source of the notebook at ``path``; raises NotebookError."""
    import nbformat  # only batch grading of notebooks needs it

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an old or slightly invalid notebook still has code
            notebook = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises JSON, validation and OS errors alike
        raise NotebookError(f"not a readable Jupyter notebook ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    parts = [f"# Python extracted from {path.name}: the code cells, IPython syntax removed."]
    futures: list[str] = []
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        cleaned = _clean_cell(str(source))
        if cleaned is None:
            kept = "\n".join("# " + line for line in str(source).splitlines())
            parts.append(f"# %% cell {number} (removed: not a Python cell)\n{kept}")
        else:
            lines = cleaned.splitlines()
            for i, line in enumerate(lines):
                if _FUTURE.match(line.rstrip()):
                    futures.append(line.rstrip())
                    lines[i] = "# moved to the top: " + line.rstrip()
            parts.append(f"# %% cell {number}\n" + "\n".join(lines))
    if futures:
        parts.insert(1, "\n".join(dict.fromkeys(futures)))
    return "\n\n".join(parts) + "\n"
