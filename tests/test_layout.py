"""The shape of the grader's code: no import cycle between its modules, and no long file
that docs/design.md (or README.md) does not account for.  Read from the source with
``ast``: nothing is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "grader"
README = ROOT / "README.md"
DESIGN = ROOT / "docs" / "design.md"   # where the code's layout is explained
MAX_LINES = 500


def modules() -> dict[str, Path]:
    """``grader.x.y`` -> its file, for every module of the package (``__init__`` as the package)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The grader modules that ``name`` imports, wherever in the file (functions included).

    ``from X import y`` is an import of ``X.y`` when that is a module, else of ``X``.
    Only the module named counts, not its parent packages: a package's
    ``__init__`` importing its own submodules is not a cycle.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, set(known)) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}          # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_is_read_from_every_module():
    graph = import_graph()
    assert {"grader.cli", "grader.batch", "grader.batch.run", "grader.batch.ray"} <= set(graph)
    assert "grader.batch" in graph["grader.cli"]                # a function-level import
    assert "grader.batch.ray" in graph["grader.batch.run"]      # relative, inside a function
    assert "grader.engine" in graph["grader.batch.grading"]     # from .. import engine


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_grader_modules_import_each_other_without_a_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def long_file_exceptions(text: str) -> dict[str, str]:
    """The files the docs allow to be long: each named (`grader/...py`) in a sentence that
    says it is longer than 500 lines and why ("because ...")."""
    allowed = {}
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        if f"longer than {MAX_LINES} lines" in sentence and "because" in sentence:
            for name in re.findall(r"`(grader/[\w/]+\.py)`", sentence):
                allowed[name] = sentence
    return allowed


def test_the_exceptions_are_read_from_sentences_that_say_why():
    text = ("No file is long.\n`grader/a.py` is longer than 500 lines because\nit is a table. "
            "`grader/b.py` is longer than 500 lines. `grader/c/d.py` too.")
    assert set(long_file_exceptions(text)) == {"grader/a.py"}


def test_no_grader_file_is_longer_than_500_lines_unless_the_readme_says_why():
    allowed = long_file_exceptions(README.read_text(encoding="utf-8") + "\n\n"
                                   + DESIGN.read_text(encoding="utf-8"))
    lengths = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
               for path in modules().values()}
    offenders = sorted(f"{name} ({n} lines)" for name, n in lengths.items()
                       if n > MAX_LINES and name not in allowed)
    assert not offenders, (f"longer than {MAX_LINES} lines, and docs/design.md does not say why: "
                           + ", ".join(offenders))
    stale = sorted(name for name in allowed if lengths.get(name, 0) <= MAX_LINES)
    assert not stale, "docs/design.md explains the length of files that are not long: " + ", ".join(stale)


# ------------------------------------------------------------ the trust boundary

INSIDE = "grader.inside"
#: What the sandbox's side may import besides its own package.
INSIDE_ALLOWED = {"numpy", "tensorflow", "mnist_loader"}


def foreign_imports(path: Path, package: str) -> set[str]:
    """The top-level names a file of ``package`` imports from outside it (relative imports
    that climb out of the package count as ``grader``), standard library excluded."""
    import sys
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level > 1:  # from .. import x: outside this package
                    found.add("grader")
                continue
            names = [node.module or ""]
        else:
            continue
        found.update(name.split(".")[0] for name in names
                     if name.split(".")[0] not in sys.stdlib_module_names)
    return found


def test_the_boundary_finder_sees_what_crosses_it(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os, json\nfrom . import sibling\nimport numpy as np\n"
                    "def f():\n    from .. import engine\n    import grader.plan\n    import yaml\n")
    assert foreign_imports(path, INSIDE) == {"numpy", "grader", "yaml"}


def test_the_sandboxs_side_imports_nothing_else_of_the_grader():
    """grader/inside/ runs beside the submission: the standard library, numpy and
    TensorFlow only, and its own modules. The parent may import it, never the reverse."""
    files = [path for name, path in modules().items()
             if name == INSIDE or name.startswith(INSIDE + ".")]
    assert {p.name for p in files} >= {"__init__.py", "runner.py", "harness.py", "probes.py",
                                       "protocol.py", "zygote_server.py"}
    crossing = {p.name: sorted(foreign_imports(p, INSIDE) - INSIDE_ALLOWED) for p in files}
    assert not any(crossing.values()), crossing
    graph = import_graph()
    outside = {name: sorted(t for t in graph[name] if not t.startswith(INSIDE))
               for name in graph if name.startswith(INSIDE)}
    assert not any(outside.values()), outside


def test_the_parent_reads_the_wire_format_from_the_sandboxs_side():
    graph = import_graph()
    assert "grader.inside.protocol" in graph["grader.protocol"]
