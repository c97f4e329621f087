"""Re-grades of one file (``watch``, ``check`` in a kernel) that reuse the ``model`` result.

The ``model`` item trains the submission's own pipeline for 1,500 steps: most of
a re-grade, and the same every time while the code it runs is the same (its
seeds, its data and the grader are fixed for the life of the process). So a
re-grade reuses the last result of that item when the *code it can reach* is
unchanged, and runs everything else as always.

What it can reach, read from the graded script's syntax tree (positions and
comments left out):

* every top-level statement that is not a function definition (imports,
  constants, classes), which runs at import; a name given a literal value
  (``IMPROVEMENTS = "..."``) only if what is kept uses it (but not ``if __name__ ==
  "__main__":``, which does not: the child imports the file under its name);
* every function definition's head (decorators, default arguments), which
  runs at import too;
* the bodies of the functions the probe calls (``MODEL_CALLS``) and, through
  the names they use, of every top-level function those can call;
* the bodies of the other functions that use a name a top-level statement
  binds (state) which a reached function uses too;
* the lines the notebook filter writes for the child to run
  (``# from the grading data (...)``).

A file that reaches code by a computed name or another module's state
(``globals``, ``getattr``, ``exec``, ``sys.modules``, ``inspect``, ...) or
uses ``global`` or ``nonlocal`` is never reused, nor is a result that was
not a success: a failure, a timeout or a crash runs again.
When the rest of the new run finds the import failing, the reused result is
dropped for that failure too. Nothing is kept on disk; batch and Gradescope
never reuse.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections import OrderedDict

from .notebook import _COMPILING, MAX_FILTERED_BYTES
from .outcome import ProbeOutput, ProbeStatus
from .plan import Task

__all__ = ["MODEL_CALLS", "ModelReuse", "model_key"]

# What grader/inside/probes.py's probe_model calls of the submission (a test reads
# that file and checks this list against it).
MODEL_CALLS = ("create_placeholders", "initialize_parameters", "forward_propagation",
               "compute_cost", "create_train_step", "initialize_session", "train")

# What reaches code by a computed name, or another module's code and state: a file that
# uses any of these is never reused (what it calls cannot be read from the tree).
DYNAMIC_NAMES = frozenset({
    "globals", "locals", "vars", "getattr", "setattr", "delattr", "eval", "exec", "compile",
    "__import__", "open", "breakpoint", "__builtins__", "execfile"})
DYNAMIC_ATTRIBUTES = frozenset({
    "modules", "__dict__", "__globals__", "__code__", "__builtins__", "__closure__",
    "_getframe", "f_globals", "f_locals", "f_back", "import_module", "__getattribute__",
    "__setattr__", "__import__", "system", "popen", "fork", "spawnv", "execv"})
DYNAMIC_MODULES = frozenset({
    "importlib", "inspect", "gc", "ctypes", "pickle", "marshal", "runpy", "builtins", "types",
    "subprocess", "multiprocessing", "threading", "signal", "dill", "cloudpickle", "shelve"})


def _dynamic(tree: ast.AST) -> bool:
    for sub in ast.walk(tree):
        if isinstance(sub, ast.Name) and sub.id in DYNAMIC_NAMES:
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in DYNAMIC_ATTRIBUTES:
            return True
        if isinstance(sub, ast.Import) and any(
                a.name.split(".")[0] in DYNAMIC_MODULES for a in sub.names):
            return True
        if isinstance(sub, ast.ImportFrom) and (sub.level or (sub.module or "").split(".")[0]
                                                in DYNAMIC_MODULES):
            return True
        if isinstance(sub, (ast.Global, ast.Nonlocal)):
            return True
    return False


def _literal(node: ast.AST) -> bool:
    """``NAME = <literal>`` (a string, a number, a tuple or list of them...): runs nothing."""
    return (isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets)
            and all(isinstance(sub, (ast.Constant, ast.Tuple, ast.List, ast.Dict, ast.Set,
                                     ast.Load, ast.UnaryOp, ast.USub, ast.UAdd))
                    for sub in ast.walk(node.value)))


def _main_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` with no ``else``."""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and not node.orelse and isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _state(tree: ast.Module) -> set[str]:
    """The names top-level statements bind to values (not imports, not functions): state that
    a function outside the model's reach could change, and one inside it read."""
    bound = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef,
                             ast.AsyncFunctionDef)) or _main_block(node):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
                bound.add(sub.id)
        if isinstance(node, ast.ClassDef):
            bound.add(node.name)
    return bound


MAX_SOURCE = MAX_FILTERED_BYTES     # larger scripts are never reused (the parent parses no more)
MAX_KEPT = 4                        # results kept: the last few versions of the file
_MARKERS = ("# from the grading data (", "# skipped, continued: ", "# Python extracted from ")


def _names(node: ast.AST) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(sub.name)
        elif isinstance(sub, ast.alias):
            found.add((sub.asname or sub.name).split(".")[0])
            found.add(sub.name.split(".")[0])
    return found


def _head(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST]:
    """What runs when the definition itself runs: decorators, defaults, annotations."""
    return [*node.decorator_list, node.args, *([node.returns] if node.returns else [])]


def model_key(source: str, task: Task) -> str | None:
    """The key of ``task``'s result for the script ``source``, or None: never reused."""
    if len(source) > MAX_SOURCE:
        return None
    try:
        with _COMPILING:  # CPython's compiler is not thread-safe
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    try:
        if _dynamic(tree):
            return None
        defs: dict[str, list] = {}
        literals: list[ast.Assign] = []
        parts: list[str] = []
        roots = set(MODEL_CALLS)
        for node in tree.body:
            if _main_block(node):
                continue  # the child imports the file under another name: it never runs
            if _literal(node):
                literals.append(node)
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defs.setdefault(node.name, []).append(node)
                head = _head(node)
                parts.append(f"def {node.name} " + ast.dump(ast.Module(
                    body=[ast.Expr(h) if isinstance(h, ast.expr) else h for h in head],
                    type_ignores=[])))
                for h in head:
                    roots |= _names(h)
            else:
                parts.append(ast.dump(node))
                roots |= _names(node)
        reached, todo = set(), [n for n in roots if n in defs]
        while todo:
            name = todo.pop()
            if name in reached:
                continue
            reached.add(name)
            for node in defs[name]:
                todo.extend(n for n in _names(node) if n in defs and n not in reached)
        # a function outside the reach that touches state a reached one reads is kept too
        shared = _state(tree) & set().union(*(_names(n) for name in reached for n in defs[name]))
        kept = reached | {name for name, nodes in defs.items()
                          if any(_names(n) & shared for n in nodes)}
        for name in sorted(kept):
            parts.extend(ast.dump(node) for node in defs[name])
        used = roots.union(*(_names(n) for name in kept for n in defs[name]))
        parts.extend(ast.dump(node) for node in literals
                     if {t.id for t in node.targets} & used)
    except RecursionError:
        return None
    parts.extend(line for line in source.splitlines() if line.startswith(_MARKERS))
    h = hashlib.sha256(json.dumps([task.id, task.item.probe, task.params, task.seed,
                                   task.item.budget_seconds, task.item.data],
                                  sort_keys=True, default=str).encode())
    for part in parts:
        h.update(hashlib.sha256(part.encode()).digest())
    return h.hexdigest()


class ModelReuse:
    """The ``model`` results of the last few versions of one file, in memory."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, ProbeOutput] = OrderedDict()
        self.reused = 0

    def keys(self, source: str, tasks: list[Task]) -> dict[str, str]:
        """{task id: key} of the tasks whose result may be reused."""
        found = {}
        for t in tasks:
            if t.item.probe == "model":
                key = model_key(source, t)
                if key is not None:
                    found[t.id] = key
        return found

    def lookup(self, keys: dict[str, str]) -> dict[str, ProbeOutput]:
        hits = {tid: self._kept[k] for tid, k in keys.items() if k in self._kept}
        for k in keys.values():
            if k in self._kept:
                self._kept.move_to_end(k)
        self.reused += len(hits)
        return hits

    def store(self, keys: dict[str, str], results: dict[str, ProbeOutput]) -> None:
        for tid, key in keys.items():
            out = results.get(tid)
            if out is not None and out.status is ProbeStatus.OK and not out.during_import:
                self._kept[key] = out
                self._kept.move_to_end(key)
        while len(self._kept) > MAX_KEPT:
            self._kept.popitem(last=False)
