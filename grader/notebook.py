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

Notebooks run the tutorial at top level (load the data, build and train the
network, plot, print); importing such a notebook would train.  So each
top-level statement is kept only when it defines something: imports,
functions, classes, ``IMPROVEMENTS``, constants (assignments computed without
calling anything but a few pure builtins), set-up calls such as
``tf.disable_v2_behavior()``, and ``if __name__ == "__main__":`` blocks (they
do not run on import).  Every other statement is commented out as
``# skipped (why): ...``; a notebook that only defines things comes out as it
always did.

Each line of the extracted script keeps its place in its cell, so that
``line_map`` can turn a line of the script back into ``cell N, line M``; the
script carries everything needed (its ``# %% cell N`` and ``# skipped``
comments), also when batch grades it as a ``.py``.
"""

from __future__ import annotations

import ast
import bisect
import functools
import re
import threading
from array import array
from collections.abc import Mapping
from pathlib import Path

from .bounded import MAX_PYTHON_BYTES, MAX_PYTHON_LINES, InputError, notebook_script, size_text

from .notebook_filter import (CONTINUED, FROM_DATA, NOT_AVAILABLE, READS_DATA, REASONS, RUNS,
                              SKIPPED, Filter, demote, skip_top_level, statement_names,
                              statements)

__all__ = ["LineMap", "NotebookError", "extract", "extract_cells", "filter_script",
           "is_extracted", "line_map", "relocate", "script_from_cells", "skipped"]

HEADER = "# Python extracted from "
CELL = re.compile(r"^# %% cell (\d+)\b")
_CELL_LINE = re.compile(r"^# %% cell (\d{1,9})\b", re.M)
HEADER_TAIL = NOTEBOOK_TAIL = (": the code cells, IPython syntax removed, top-level code that "
                              "runs the tutorial skipped.")
SCRIPT_TAIL = ": top-level code that runs the tutorial skipped."
MAX_HEADER_CHARS = 1024
_HEADER_LINE = re.compile(re.escape(HEADER) + r"[^\n]{1,512}?(?:" + re.escape(NOTEBOOK_TAIL)
                          + "|" + re.escape(SCRIPT_TAIL) + ")$")
_LABEL = re.compile(r"^# %% cell (\d+)(?:, In \[(\d+)\])?")
MAX_FILTERED_BYTES = 64 * 2**10   # a larger .py is graded as it is (the parent parses it)
GUARD_NOTE = ("Your file runs code when it is imported, so the grader skipped that code "
              "(listed below) and graded your functions. Such code belongs under "
              "`if __name__ == \"__main__\":`, which importing the file does not run.")
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})
_ASSIGNED_ESCAPE = re.compile(r"^\s*[A-Za-z_][\w.,\s]*=\s*[!%]")
_HELP = re.compile(r"^\s*(\?{1,2}[\w.]+|[\w.]+\?{1,2})\s*$")
_FUTURE = re.compile(r"^from\s+__future__\s+import\s+[^#;]+$")


class NotebookError(InputError):
    """The file is not a notebook that can be read within the bounds (one line, naming it)."""


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


def is_extracted(source: str) -> bool:
    """Whether ``source`` is a script ``extract`` (or ``filter_script``) wrote: its first
    line is the header they write, and it is within the bounds of such a script (anything
    else is graded as a plain ``.py``, its lines not mapped to cells)."""
    first = source[:MAX_HEADER_CHARS].partition("\n")[0]
    return (bool(_HEADER_LINE.match(first)) and len(source) <= MAX_PYTHON_BYTES
            and source.count("\n") <= MAX_PYTHON_LINES)


class LineMap(Mapping):
    """{line of the extracted script: (cell, line in the cell)}, held as one entry per
    ``# %% cell N`` line rather than one per line, so its size is the number of cells."""

    def __init__(self, source: str):
        self._starts, self._cells = array("q"), array("q")
        line, position = 1, 0
        for match in _CELL_LINE.finditer(source):
            line += source.count("\n", position, match.start())
            position = match.start()
            self._starts.append(line)
            self._cells.append(int(match.group(1)))
        self._last = source.count("\n") + (0 if source.endswith("\n") or not source else 1)

    def _find(self, number: int) -> int:
        if not isinstance(number, int) or number > self._last:
            return -1
        i = bisect.bisect_right(self._starts, number) - 1
        return -1 if i < 0 or self._starts[i] == number else i

    def __getitem__(self, number: int) -> tuple[int, int]:
        i = self._find(number)
        if i < 0:
            raise KeyError(number)
        return self._cells[i], number - self._starts[i]

    def __contains__(self, number: object) -> bool:
        return self._find(number) >= 0  # type: ignore[arg-type]

    def __iter__(self):
        for i, start in enumerate(self._starts):
            end = self._starts[i + 1] if i + 1 < len(self._starts) else self._last + 1
            yield from range(start + 1, end)

    def __len__(self) -> int:
        if not self._starts:
            return 0
        return self._last - self._starts[0] + 1 - len(self._starts)


@functools.lru_cache(maxsize=4)
def line_map(source: str) -> LineMap:
    """{line of the extracted script: (cell, line in the cell)}; computed once per script
    (the map is immutable), its size the number of cells."""
    return LineMap(source)


@functools.lru_cache(maxsize=4)   # asked again for each message of a grade
def _labels(source: str) -> dict[int, str]:
    """{cell number: the cell as Jupyter shows it}: ``In [7]`` (its execution count), else
    ``code cell 5``; cell 0 is a ``.py`` file's whole text, named by lines alone."""
    labels = {}
    for line in source.splitlines():
        match = _LABEL.match(line)
        if match:
            cell = int(match.group(1))
            labels[cell] = (f"In [{match.group(2)}]" if match.group(2) else
                            f"code cell {cell}" if cell else "")
    return labels


def _place(cell: int, line: str, labels: dict[int, str]) -> str:
    label = labels.get(cell, f"code cell {cell}")
    return f"{label}, {line}" if label else line


def skipped(source: str, limit: int = 100) -> list[str]:
    """The skipped statements of an extracted script, grouped by why: a line per reason,
    then a line per statement (where, and its text).  Beyond ``limit`` statements, each
    reason lists its first few and counts the rest."""
    mapping, labels = line_map(source), _labels(source)
    lines = source.splitlines()
    groups: dict[str, list[str]] = {}
    for prefix in (SKIPPED, FROM_DATA):
        for number, inside, code in statements(lines, prefix):
            if number not in mapping:
                continue
            why = READS_DATA if prefix == FROM_DATA else inside if inside in REASONS else RUNS
            cell, first = mapping[number]
            last = number + code.count("\n")
            span = f"line {first}" if last == number else \
                f"lines {first}-{mapping.get(last, (cell, first))[1]}"
            text = code.split("\n")[0].strip()
            more = len(text) > 80 or last > number
            groups.setdefault(why, []).append(
                f"{_place(cell, span, labels)}: {text[:80]}{' ...' if more else ''}")
    if not groups:
        return []
    order = sorted(groups, key=REASONS.index)
    total = sum(len(g) for g in groups.values())
    each = total if total <= limit else max(3, limit // len(groups))
    notes = [GUARD_NOTE] if labels.get(0) == "" else []
    for why in order:
        entries = groups[why]
        notes.append(f"{why} ({len(entries)}):")
        notes += [f"  {e}" for e in entries[:each]]
        if len(entries) > each:
            notes.append(f"  {len(entries) - each} more statements like these")
    return notes


_AT_LINE = re.compile(r"(?P<file>\S+\.py), line (?P<line>\d+)")
_SYNTAX = re.compile(r"\(line (?P<line>\d+)\)")
_UNDEFINED = re.compile(r"name '(?P<name>\w+)' is not defined")
_NO_FUNCTION = re.compile(r"defines no function (?P<name>\w+)\(\)")
_NO_MODULE = re.compile(r"No module named '(?P<module>[\w.]+)'")
_ANNOTATED = ", which the grader "


@functools.lru_cache(maxsize=4)   # asked again for each message of a grade
def _skipped_names(source: str) -> dict[str, tuple[int, str, str]]:
    """{name: (script line, why, code)} of the names skipped statements set."""
    lines, found = source.splitlines(), {}
    with _COMPILING:   # statement_names parses
        for prefix in (SKIPPED, FROM_DATA):
            for number, inside, code in statements(lines, prefix):
                why = inside if prefix == SKIPPED else READS_DATA
                for name in statement_names(code):
                    found.setdefault(name, (number, why, code))
    return found


def _why_missing(text: str, source: str, mapping: dict[int, tuple[int, int]]) -> str:
    """What to add to ``text`` when it fails on a name only a skipped line sets, or on a
    package the grading environment lacks."""
    if _ANNOTATED in text:
        return ""
    module = _NO_MODULE.search(text)
    if module:
        top = module.group("module").split(".")[0]
        return (f" ({top} is not available when grading: docs/assignment.md lists the packages "
                "that are; use those, or do without it)")
    match = _UNDEFINED.search(text) or _NO_FUNCTION.search(text)
    if not match:
        return ""
    name = match.group("name")
    found = _skipped_names(source).get(name)
    if found is None or found[0] not in mapping:
        return ""
    number, why, code = found
    cell, line = mapping[number]
    place, first = _place(cell, f"line {line}", _labels(source)), code.split("\n")[0].strip()
    more = " ..." if len(first) > 80 or "\n" in code else ""
    where = f"{place}: `{first[:80]}{more}`"
    if why == NOT_AVAILABLE:
        return (f" ({name} comes from {where}{_ANNOTATED}skips: its package is not available "
                "when grading; docs/assignment.md lists the packages that are)")
    if first.startswith(("def ", "async def ", "class ", "@")):
        return (f" ({name} is defined at {where}{_ANNOTATED}skips ({why}): what runs as it is "
                "defined (decorators, default arguments) must not run the tutorial; compute "
                "such a value inside the function)")
    done = "ran on the grading data, where it failed" if why == READS_DATA else f"skips ({why})"
    return (f" ({name} is set only by {where}{_ANNOTATED}{done}; compute {name} inside the "
            "function that needs it, or make it a constant)")


def relocate(text: str, source: str, submission_name: str,
             mapping: dict[int, tuple[int, int]] | None = None) -> str:
    """``text`` (a message or traceback) with lines of the extracted script named as
    Jupyter names them: ``tensorflow_tutorial.py, line 40`` -> ``In [7], line 3`` (or
    ``code cell 5, line 3``; ``line 38`` for a ``.py``); a syntax error's ``(line 40)``
    -> ``(In [7], line 3: <the line>)``.  A failure on a name that only a skipped line
    sets says which line, and why it was skipped."""
    mapping = line_map(source) if mapping is None else mapping
    lines = source.splitlines()
    labels = _labels(source) if "line " in text else {}

    def where(number: int) -> str | None:
        if number not in mapping:
            return None
        cell, line = mapping[number]
        return _place(cell, f"line {line}", labels)

    def frame(match: re.Match) -> str:
        if match.group("file") != submission_name:
            return match.group(0)
        return where(int(match.group("line"))) or match.group(0)

    def syntax(match: re.Match) -> str:
        number = int(match.group("line"))
        place = where(number)
        if place is None:
            return match.group(0)
        quoted = lines[number - 1].strip() if 0 < number <= len(lines) else ""
        if quoted.startswith((SKIPPED, CONTINUED, FROM_DATA)):
            quoted = quoted.partition(": ")[2]
        return f'({place}: "{quoted[:100]}")' if quoted else f"({place})"

    text = _SYNTAX.sub(syntax, _AT_LINE.sub(frame, text))
    return text + _why_missing(text, source, mapping)


def extract_cells(sources: list[str], name: str = "the kernel's history",
                  counts: list[int | None] | None = None) -> str:
    """The Python of a notebook's code cells, in order (``counts``: their execution
    counts, where known), as the grader imports it: IPython syntax removed, the
    top-level code that runs the tutorial skipped.  ``extract`` reads a notebook file
    through it; the self-check passes it the kernel's input history."""
    parts = [f"{HEADER}{name}{NOTEBOOK_TAIL}"]
    futures: list[str] = []
    keeper = Filter()
    for number, source in enumerate(sources, start=1):
        count = counts[number - 1] if counts and number <= len(counts) else None
        label = f"# %% cell {number}" + (f", In [{count}]" if isinstance(count, int) else "")
        cleaned = _clean_cell(str(source))
        if cleaned is None:
            kept = "\n".join("# " + line for line in str(source).splitlines())
            parts.append(f"{label} (removed: not a Python cell)\n{kept}")
            continue
        lines = skip_top_level(cleaned, keeper).splitlines()
        for i, line in enumerate(lines):
            if _FUTURE.match(line.rstrip()):
                futures.append(line.rstrip())
                lines[i] = "# moved to the top: " + line.rstrip()
        parts.append(f"{label}\n" + "\n".join(lines))
    if futures:
        parts.insert(1, "\n".join(dict.fromkeys(futures)))
    return demote("\n\n".join(parts) + "\n", keeper)


# CPython 3.11's compiler is not safe from two threads at once ("AST constructor recursion
# depth mismatch"): batch's workers are threads, so the parent compiles one file at a time.
_COMPILING = threading.Lock()


def filter_script(source: str, name: str) -> str | None:
    """A ``.py`` that runs code at import as the grader imports it (its lines unmoved, after
    two header lines), or None when importing it as it is runs nothing of the tutorial
    (or it is too large, or does not parse: graded as it is)."""
    with _COMPILING:
        return _filter_script(source, name)


def _filter_script(source: str, name: str) -> str | None:
    if len(source) > MAX_FILTERED_BYTES or is_extracted(source) or \
            source.count("\r") != source.count("\r\n"):   # lines as Python counts them
        return None
    keeper = Filter()
    filtered = skip_top_level(source, keeper)
    if filtered is source or (SKIPPED not in filtered and FROM_DATA not in filtered):
        return None
    return demote(f"{HEADER}{name}{SCRIPT_TAIL}\n"
                  f"# %% cell 0 (the whole file)\n{filtered}", keeper)


def extract(path: Path) -> str:
    """The Python source of the notebook at ``path``, read in a helper process under
    ``bounded``'s limits (``notebook_reader``); raises NotebookError (one line, naming
    the file)."""
    try:
        return notebook_script(path)
    except NotebookError:
        raise
    except InputError as exc:
        raise NotebookError(str(exc)) from None


def script_from_cells(cells: list, name: str) -> str:
    """``extract``'s work on a notebook's cells (``{"cell_type", "source",
    "execution_count"}``, in order), in this process: what ``notebook_reader`` runs under
    its limits.  Only code cells count, numbered as such; ``name`` is the file's name."""
    code = [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    sources = ["".join(str(x) for x in s) if isinstance(s, list) else str(s)
               for s in (c.get("source", "") for c in code)]
    counts = [c.get("execution_count") if type(c.get("execution_count")) is int else None
              for c in code]
    try:
        script = extract_cells(sources, name, counts)
    except (RecursionError, MemoryError):
        raise NotebookError(f"{name}: {_too_deep(sources, counts)} is too deeply nested or "
                            "too large for Python to compile") from None
    if len(script.encode("utf-8", "surrogatepass")) > MAX_PYTHON_BYTES:
        raise NotebookError(f"{name}: its code is more than {size_text(MAX_PYTHON_BYTES)}")
    if script.count("\n") > MAX_PYTHON_LINES:
        raise NotebookError(f"{name}: its code is more than {MAX_PYTHON_LINES} lines")
    return script


def _too_deep(sources: list[str], counts: list[int | None]) -> str:
    """The first cell Python cannot compile for its depth or size, as Jupyter names it."""
    for number, (source, count) in enumerate(zip(sources, counts), start=1):
        try:
            compile(source, "<cell>", "exec", flags=ast.PyCF_ONLY_AST)
        except (RecursionError, MemoryError):
            return f"In [{count}]" if count is not None else f"code cell {number}"
        except (SyntaxError, ValueError):
            continue
    return "a cell"
