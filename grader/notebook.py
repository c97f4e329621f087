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
import builtins
import functools
import re
from array import array
from collections.abc import Mapping
from pathlib import Path

from .bounded import MAX_PYTHON_BYTES, MAX_PYTHON_LINES, InputError, notebook_script, size_text

__all__ = ["LineMap", "NotebookError", "extract", "is_extracted", "line_map", "relocate",
           "script_from_cells", "skipped"]

HEADER = "# Python extracted from "
HEADER_TAIL = (": the code cells, IPython syntax removed, top-level code that runs the tutorial "
               "skipped.")
MAX_HEADER_CHARS = 1024
_HEADER_LINE = re.compile(re.escape(HEADER) + r"[^\n]{1,512}\.ipynb" + re.escape(HEADER_TAIL)
                          + "$")
CELL = re.compile(r"^# %% cell (\d+)\b")
_CELL_LINE = re.compile(r"^# %% cell (\d{1,9})\b", re.M)
SKIPPED = "# skipped ("
CONTINUED = "# skipped, continued: "
_SKIPPED_LINE = re.compile("^" + re.escape(SKIPPED) + ".*$", re.M)
# Top-level calls that set things up rather than run the tutorial.
SETUP_CALLS = frozenset({"disable_v2_behavior", "disable_eager_execution", "enable_eager_execution",
                         "disable_resource_variables", "disable_v2_tensorshape", "set_verbosity",
                         "filterwarnings", "simplefilter", "setdefault", "putenv", "seed",
                         "set_random_seed", "set_seed", "reset_default_graph", "setLevel"})
SETUP_PATHS = frozenset({"sys.path.insert", "sys.path.append"})
PURE_BUILTINS = frozenset({"int", "float", "str", "bool", "tuple", "list", "dict", "set",
                           "frozenset", "len", "range", "abs", "min", "max", "round", "sum",
                           "sorted", "zip", "enumerate"})
_BUILTIN_NAMES = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__"}

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


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


class _Filter:
    """Decides, statement by statement in notebook order, what importing may run."""

    def __init__(self):
        self.defined: set[str] = set(_BUILTIN_NAMES)
        self.star = False               # after ``from x import *`` any name may exist
        self.unset: set[str] = set()    # names only skipped code assigns

    def _pure(self, node: ast.AST) -> str:
        """"" if evaluating ``node`` runs nothing of the tutorial, else why it does."""
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
                return "runs at top level"
            if isinstance(sub, ast.Call) and not (isinstance(sub.func, ast.Name)
                                                  and sub.func.id in PURE_BUILTINS):
                return _why_call(sub)
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                missing = self._missing(sub.id)
                if missing:
                    return missing
        return ""

    def _missing(self, name: str) -> str:
        if name in self.defined or self.star:
            return ""
        if name in self.unset:
            return f"uses {name}, which skipped code sets"
        return ""   # a NameError the student will see, as Python would raise it

    def why_skipped(self, stmt: ast.stmt) -> str:
        """"" to keep ``stmt`` (and note what it defines), else why it is skipped."""
        why = self._why(stmt)
        if why:
            for name in _bound(stmt):
                if name not in self.defined:
                    self.unset.add(name)
        else:
            for name in _bound(stmt):
                self.defined.add(name)
                self.unset.discard(name)
            if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
                self.star = True
        return why

    def _why(self, stmt: ast.stmt) -> str:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                             ast.ClassDef, ast.Pass)):
            return ""
        if isinstance(stmt, ast.Expr):
            value = stmt.value
            if isinstance(value, ast.Constant):       # a docstring or a stray literal
                return ""
            if isinstance(value, ast.Call) and (_call_name(value.func) in SETUP_CALLS
                                                or ast.unparse(value.func) in SETUP_PATHS):
                return self._names_missing(value)
            return self._pure(value) or "shows a value at top level"
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = [n for t in targets for n in ast.walk(t)]
            if not all(isinstance(n, (ast.Name, ast.Tuple, ast.List, ast.Load, ast.Store))
                       for n in names):
                return "changes an object at top level"
            if stmt.value is None:
                return ""
            if "IMPROVEMENTS" in _bound(stmt):
                return self._names_missing(stmt.value)
            return self._pure(stmt.value)
        if isinstance(stmt, ast.If):
            if _is_main_guard(stmt.test):
                return ""
            return self._pure(stmt.test) or self._all_kept(stmt.body + stmt.orelse)
        if isinstance(stmt, ast.Try):   # kept as a whole when what it tries is kept
            return self._all_kept(stmt.body)
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            return "a loop at top level"
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            return "a with block at top level"
        return "runs at top level"

    def _names_missing(self, node: ast.AST) -> str:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                missing = self._missing(sub.id)
                if missing:
                    return missing
        return ""

    def _all_kept(self, body: list[ast.stmt]) -> str:
        return next((w for w in (self._why(s) for s in body) if w), "")


def _is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)
            and {ast.dump(test.left), ast.dump(test.comparators[0])}
            == {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))})


def _why_call(call: ast.Call) -> str:
    name = _call_name(call.func)
    lower = name.lower()
    if name == "print" or lower in ("display", "pprint"):
        return "prints"
    root = call.func
    while isinstance(root, ast.Attribute):
        root = root.value
    if (isinstance(root, ast.Name) and root.id in ("plt", "sns", "matplotlib")) or lower in (
            "plot", "imshow", "show", "savefig", "figure", "subplots", "hist", "scatter"):
        return "plots"
    if "load" in lower or "read" in lower or "download" in lower:
        return f"loads data: {name}()"
    if lower in ("train", "fit", "run", "evaluate", "minimize") or "train" in lower:
        return f"trains or evaluates: {name}()"
    return f"calls {name or 'a function'}() at top level"


def _bound(stmt: ast.stmt) -> set[str]:
    """The names a top-level statement binds."""
    names: set[str] = set()
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        for alias in stmt.names:
            if alias.name != "*":
                names.add(alias.asname or alias.name.split(".")[0])
        return names
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    targets: list[ast.AST] = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        targets = [stmt.target]
    for target in targets:
        names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    for field in ("body", "orelse", "finalbody"):
        for sub in getattr(stmt, field, None) or []:
            names |= _bound(sub)
    for handler in getattr(stmt, "handlers", None) or []:
        for sub in handler.body:
            names |= _bound(sub)
    return names


def _skip_top_level(cell: str, keeper: _Filter) -> str:
    """The cell with the statements that run the tutorial commented out, line for line."""
    try:
        tree = ast.parse(cell)
    except (SyntaxError, ValueError):
        return cell   # the syntax error is the student's, reported with its cell
    lines = cell.split("\n")
    groups: list[list] = []   # statements that share lines (``a = 1; print(a)``) go together
    for stmt in tree.body:
        first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        if groups and first <= groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], stmt.end_lineno)
            groups[-1][2].append(stmt)
        else:
            groups.append([first, stmt.end_lineno, [stmt]])
    for first, last, stmts in groups:
        reasons = [keeper.why_skipped(s) for s in stmts]
        why = next((r for r in reasons if r), "")
        if not why:
            continue
        for i in range(first - 1, last):
            prefix = f"{SKIPPED}{why}): " if i == first - 1 else CONTINUED
            lines[i] = prefix + lines[i]
    return "\n".join(lines)


def is_extracted(source: str) -> bool:
    """Whether ``source`` is a script ``extract`` wrote: its first line is the header
    ``extract`` writes, and it is within the bounds of an extracted script (anything
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


def skipped(source: str, limit: int = 30) -> list[str]:
    """One line per skipped statement of an extracted script: where, why, and its text."""
    mapping = line_map(source)
    notes, count = [], 0
    line, position = 1, 0
    for match in _SKIPPED_LINE.finditer(source):
        line += source.count("\n", position, match.start())
        position = match.start()
        if line not in mapping:
            continue
        count += 1
        if len(notes) > limit:
            continue
        why, _, code = match.group(0)[len(SKIPPED):].partition("): ")
        last, end = line, match.end()
        while source.startswith(CONTINUED, end + 1):
            last += 1
            following = source.find("\n", end + 1)
            end = len(source) if following < 0 else following
        cell, first_line = mapping[line]
        span = f"line {first_line}" if last == line else \
            f"lines {first_line}-{mapping.get(last, (cell, first_line))[1]}"
        code = code.strip()
        notes.append(f"cell {cell}, {span} ({why}): {code[:80]}{'...' if len(code) > 80 else ''}")
    if count > limit:
        notes[limit:] = [f"... and {count - limit} more"]
    return notes


_AT_LINE = re.compile(r"(?P<file>\S+\.py), line (?P<line>\d+)")
_SYNTAX = re.compile(r"\(line (?P<line>\d+)\)")


def relocate(text: str, source: str, submission_name: str,
             mapping: dict[int, tuple[int, int]] | None = None) -> str:
    """``text`` (a message or traceback) with lines of the extracted script named as cells:
    ``tensorflow_tutorial.py, line 40`` -> ``cell 7, line 3``; a syntax error's
    ``(line 40)`` -> ``(cell 7, line 3: <the line>)``."""
    mapping = line_map(source) if mapping is None else mapping
    lines = source.splitlines()

    def where(number: int) -> str | None:
        if number not in mapping:
            return None
        cell, line = mapping[number]
        return f"cell {cell}, line {line}"

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
        if quoted.startswith(SKIPPED) or quoted.startswith(CONTINUED):
            quoted = quoted.partition(": ")[2]
        return f'({place}: "{quoted[:100]}")' if quoted else f"({place})"

    return _SYNTAX.sub(syntax, _AT_LINE.sub(frame, text))


def extract(path: Path) -> str:
    """The Python source of the notebook at ``path``, read in a helper process under
    ``bounded``'s limits; raises NotebookError (one line, naming the file)."""
    try:
        return notebook_script(path)
    except NotebookError:
        raise
    except InputError as exc:
        raise NotebookError(str(exc)) from None


def script_from_cells(cells: list, name: str) -> str:
    """``extract``'s work on a notebook's cells (format 4), in this process: what
    ``notebook_reader`` runs under its limits.  ``name`` is the notebook's file name."""
    parts = [f"{HEADER}{name}{HEADER_TAIL}"]
    futures: list[str] = []
    keeper = _Filter()
    for number, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(s) for s in source)
        try:
            cleaned = _clean_cell(str(source))
            if cleaned is not None:
                lines = _skip_top_level(cleaned, keeper).splitlines()
        except (RecursionError, MemoryError):
            raise NotebookError(f"{name}: cell {number} is too deeply nested or too large "
                                "for Python to compile") from None
        if cleaned is None:
            kept = "\n".join("# " + line for line in str(source).splitlines())
            parts.append(f"# %% cell {number} (removed: not a Python cell)\n{kept}")
        else:
            for i, line in enumerate(lines):
                if _FUTURE.match(line.rstrip()):
                    futures.append(line.rstrip())
                    lines[i] = "# moved to the top: " + line.rstrip()
            parts.append(f"# %% cell {number}\n" + "\n".join(lines))
    if futures:
        parts.insert(1, "\n".join(dict.fromkeys(futures)))
    script = "\n\n".join(parts) + "\n"
    if len(script.encode("utf-8", "surrogatepass")) > MAX_PYTHON_BYTES:
        raise NotebookError(f"{name}: its code is more than {size_text(MAX_PYTHON_BYTES)}")
    if script.count("\n") > MAX_PYTHON_LINES:
        raise NotebookError(f"{name}: its code is more than {MAX_PYTHON_LINES} lines")
    return script
