"""What importing a student's file may run: the statement-by-statement filter.

Notebooks (and ``.py`` files written like them) run the tutorial at top level:
load the data, build and train the network, plot, print.  Importing such a
file would train, or fail on data the sandbox does not have.  So each
top-level statement is kept only when running it cannot run the tutorial:

- imports (an import of a package the grading environment lacks is skipped:
  a function that needs it then fails naming the package), functions and
  classes, ``IMPROVEMENTS``, constants (computed without calling anything but
  a few pure builtins), set-up calls such as ``tf.disable_v2_behavior()`` or
  ``np.random.seed(1)`` with constant arguments, and ``if __name__ ==
  "__main__":`` blocks (they do not run on import);
- a function or class is kept only when what runs as it is defined is inert:
  decorators, default arguments, annotations, base classes and a class body
  may read names and call library code, never code the filter skipped, the
  student's own functions, or anything that loads, trains, plots or prints.

Every other statement is skipped, with one reason from :data:`REASONS`.  The
self-check lines (``import grader``, ``from grader import check``,
``check("Q5")``) are skipped as such.

Statements that only read the loaded data (its shapes, sizes, the training
split), e.g. ``n_input = mnist.train.images.shape[1] * mnist.train.images.shape[2]``
after ``mnist = load_dataset()``, are marked ``# from the grading data
(mnist): ...``: the sandboxed child runs them after the import with ``mnist``
bound to a stand-in of the grading data (the training split, the test images,
never a test label), so that the names functions use are there.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib.machinery
import sys
import sysconfig

SKIPPED = "# skipped ("
CONTINUED = "# skipped, continued: "
FROM_DATA = "# from the grading data ("

# The reasons a statement is skipped, in the order the report lists them.
LOADS_DATA = "loads data"
USES_DATA = "uses the data"
TRAINS = "trains or evaluates"
PLOTS = "plots"
PRINTS = "prints"
CALLS = "calls a function at top level"
USES_SKIPPED = "uses a name only skipped code sets"
SHOWS = "shows a value at top level"
CHANGES = "changes an object at top level"
LOOP = "a loop at top level"
WITH = "a with block at top level"
RUNS_AT_IMPORT = "would run code at import"
RUNS = "runs at top level"
NOT_AVAILABLE = "its package is not available when grading"
SELF_CHECK = "self-check"
IPYTHON = "IPython only"
READS_DATA = "reads the data: run on the grading data instead"
REASONS = (LOADS_DATA, USES_DATA, TRAINS, PLOTS, PRINTS, CALLS, USES_SKIPPED, SHOWS, CHANGES,
           LOOP, WITH, RUNS_AT_IMPORT, RUNS, NOT_AVAILABLE, SELF_CHECK, IPYTHON, READS_DATA)

# Top-level calls that set things up rather than run the tutorial.
SETUP_CALLS = frozenset({"disable_v2_behavior", "disable_eager_execution", "enable_eager_execution",
                         "disable_resource_variables", "disable_v2_tensorshape", "set_verbosity",
                         "filterwarnings", "simplefilter", "setdefault", "putenv", "seed",
                         "set_random_seed", "set_seed", "reset_default_graph", "setLevel"})
SETUP_PATHS = frozenset({"sys.path.insert", "sys.path.append"})
PURE_BUILTINS = frozenset({"int", "float", "str", "bool", "tuple", "list", "dict", "set",
                           "frozenset", "len", "range", "abs", "min", "max", "round", "sum",
                           "sorted", "zip", "enumerate"})
TRAIN_CALLS = frozenset({"train", "fit", "run", "evaluate", "eval", "main", "model", "predict",
                         "minimize", "train_model", "run_model"})
PRINT_CALLS = frozenset({"print", "display", "pprint"})
PLOT_CALLS = frozenset({"plot", "imshow", "show", "savefig", "figure", "subplots", "hist",
                        "scatter", "subplot", "plot_images", "plot_example_errors",
                        "plot_confusion_matrix", "plot_weights"})
PLOT_ROOTS = frozenset({"plt", "sns", "matplotlib", "pylab"})
# Modules of TensorFlow 1 that TensorFlow 2 no longer has.
GONE = ("tensorflow.examples", "tensorflow.contrib")
# Files beside the submission in the sandbox.
BESIDE = frozenset({"mnist_loader"})
_BUILTIN_NAMES = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__"}


@functools.lru_cache(maxsize=256)
def available(module: str) -> bool:
    """Whether ``import module`` can work when grading, found without importing anything."""
    if module == "__future__" or module.startswith(GONE) or module in GONE:
        return module == "__future__"
    top = module.split(".")[0]
    if top in BESIDE or top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return True
    paths = list(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))
    try:
        return importlib.machinery.PathFinder.find_spec(top, paths) is not None
    except (ImportError, ValueError):
        return False


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _root(node: ast.expr) -> str:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def why_call(call: ast.Call) -> str:
    """The reason a top-level call is skipped, from what it calls."""
    name = _call_name(call.func)
    lower = name.lower()
    root = _root(call.func)
    if lower in PRINT_CALLS:
        return PRINTS
    if root in PLOT_ROOTS or lower in PLOT_CALLS:
        return PLOTS
    if name == "get_ipython" or root == "get_ipython":
        return IPYTHON
    if root in ("pickle", "input_data") or any(w in lower for w in ("load", "read", "download",
                                                                    "mnist", "dataset")):
        return LOADS_DATA
    if lower in TRAIN_CALLS:
        return TRAINS
    return CALLS


def _targets(stmt: ast.stmt) -> list[ast.expr]:
    if isinstance(stmt, ast.Assign):
        return stmt.targets
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        return [stmt.target]
    return []


def bound(stmt: ast.stmt) -> set[str]:
    """The names a top-level statement binds."""
    names: set[str] = set()
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        for alias in stmt.names:
            if alias.name != "*":
                names.add(alias.asname or alias.name.split(".")[0])
        return names
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    for target in _targets(stmt):
        names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    for field in ("body", "orelse", "finalbody"):
        for sub in getattr(stmt, field, None) or []:
            names |= bound(sub)
    for handler in getattr(stmt, "handlers", None) or []:
        for sub in handler.body:
            names |= bound(sub)
    return names


def is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)
            and {ast.dump(test.left), ast.dump(test.comparators[0])}
            == {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))})


def _walk(node: ast.AST):
    """``ast.walk`` that does not enter a lambda's body (it runs when called, not now)."""
    todo = [node]
    while todo:
        sub = todo.pop()
        yield sub
        if isinstance(sub, ast.Lambda):
            todo.extend(sub.args.defaults + [d for d in sub.args.kw_defaults if d])
        else:
            todo.extend(ast.iter_child_nodes(sub))


def _str_method_chain(func: ast.expr) -> bool:
    """``"...".strip()``, ``" ".join(...)``: a method of a string literal."""
    while isinstance(func, ast.Attribute):
        func = func.value
        if isinstance(func, ast.Call):
            func = func.func
    return isinstance(func, ast.Constant) and isinstance(func.value, str)


class Filter:
    """Decides, statement by statement in the file's order, what importing may run."""

    def __init__(self):
        self.defined: set[str] = set(_BUILTIN_NAMES)
        self.star = False                  # after ``from x import *`` any name may exist
        self.unset: set[str] = set()       # names only skipped code assigns
        self.data: set[str] = set()        # names the loaded data, or what uses it, is under
        self.derived: set[str] = set()     # names a data-reading statement sets in the child
        self.grader: set[str] = {"check"}  # names of the self-check
        self.demoted: set[str] = set()     # derived names that later code sets again
        self.tried = False                 # inside a try block with handlers
        self.library: set[str] = set()     # names kept imports bind

    # ------------------------------------------------------------ expressions

    def _expr(self, nodes: list[ast.AST], library_calls: bool = False,
              str_methods: bool = False) -> tuple[str, set[str]]:
        """(why evaluating ``nodes`` runs the tutorial or "", the data names they read).

        ``why`` is ``READS_DATA`` when they only read the data.  ``library_calls``: a
        call of what an import bound (``tf.zeros_initializer()``) counts as inert, as in
        what runs as a function or class is defined."""
        call_why, skipped_name, data_names, derived = "", False, set(), False
        for node in nodes:
            for sub in _walk(node):
                if isinstance(sub, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
                    call_why = call_why or RUNS
                elif isinstance(sub, ast.Call):
                    name = sub.func.id if isinstance(sub.func, ast.Name) else ""
                    if name in PURE_BUILTINS or (str_methods and _str_method_chain(sub.func)):
                        continue
                    why = why_call(sub)
                    if library_calls and why == CALLS and _root(sub.func) in self.library:
                        continue
                    call_why = why if call_why in ("", CALLS) else call_why
                elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                    if sub.id in self.data:
                        data_names.add(sub.id)
                    elif sub.id in self.derived:
                        derived = True
                    elif sub.id in self.unset and sub.id not in self.defined and not self.star:
                        skipped_name = True
        if call_why in (LOADS_DATA, TRAINS, PLOTS, PRINTS, IPYTHON):
            return call_why, data_names
        if data_names or derived:
            return (USES_DATA if call_why or skipped_name else READS_DATA), data_names
        return (USES_SKIPPED if skipped_name else call_why), data_names

    def _inert(self, nodes: list[ast.AST]) -> str:
        """"" if what runs as a function or class is defined is inert, else why not."""
        why, _ = self._expr(nodes, library_calls=True)
        if why == READS_DATA:
            return USES_DATA
        if why == CALLS:
            return RUNS_AT_IMPORT
        return why

    # ------------------------------------------------------------- statements

    def why_skipped(self, stmt: ast.stmt) -> tuple[str, set[str]]:
        """("", _) to keep ``stmt``, else (why it is skipped, the data names it reads)."""
        why, data_names = self._why(stmt)
        names = bound(stmt)
        if why == READS_DATA:
            self.derived |= names
            self.unset -= names
            return why, data_names
        self.demoted |= names & self.derived
        self.derived -= names
        if why:
            if why in (LOADS_DATA, USES_DATA):
                self.data |= names - self.defined
            if why == SELF_CHECK:
                self.grader |= names
            self.unset |= names - self.defined
        else:
            self.defined |= names
            self.unset -= names
            self.data -= names
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.library |= {name for sub in ast.walk(stmt) if isinstance(
                    sub, (ast.Import, ast.ImportFrom)) for name in bound(sub)}  # in a try too
            if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
                self.star = True
        return why, data_names

    def _why(self, stmt: ast.stmt) -> tuple[str, set[str]]:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            return self._why_import(stmt), set()
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return self._why_definition(stmt)
        if isinstance(stmt, ast.Pass):
            return "", set()
        if isinstance(stmt, ast.Expr):
            return self._why_expression(stmt.value), set()
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            return self._why_assignment(stmt)
        if isinstance(stmt, ast.If):
            if is_main_guard(stmt.test):
                return "", set()
            return self._plain(self._expr([stmt.test])[0]) or self._all_kept(
                stmt.body + stmt.orelse), set()
        if isinstance(stmt, ast.Try):   # kept as a whole when all it may run is kept
            handlers = [s for h in stmt.handlers for s in h.body]
            types = [h.type for h in stmt.handlers if h.type is not None]
            self.tried, before = bool(stmt.handlers), self.tried   # it may catch an ImportError
            try:
                return self._plain(self._expr(types)[0]) or self._all_kept(
                    stmt.body + handlers + stmt.orelse + stmt.finalbody), set()
            finally:
                self.tried = before
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            return self._plain(self._expr([getattr(stmt, "iter", None) or stmt.test])[0],
                               (TRAINS, LOADS_DATA)) or LOOP, set()
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            return WITH, set()
        return RUNS, set()

    @staticmethod
    def _plain(why: str, keep: tuple[str, ...] = ()) -> str:
        """A reason where a data-reading expression cannot run in the child."""
        if keep and why not in keep:
            return ""
        return USES_DATA if why == READS_DATA else why

    def _why_import(self, stmt: ast.Import | ast.ImportFrom) -> str:
        modules = [a.name for a in stmt.names] if isinstance(stmt, ast.Import) else \
            [("." * stmt.level) + (stmt.module or "")]
        if any(m.split(".")[0] == "grader" for m in modules):
            return SELF_CHECK
        if not self.tried and any(not m.startswith(".") and not available(m) for m in modules):
            return NOT_AVAILABLE
        return ""

    def _why_definition(self, stmt: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                        ) -> tuple[str, set[str]]:
        """Why what runs as ``stmt`` is defined is not inert; ``READS_DATA`` when it only
        reads the data (``def f(n=n_input)``): the child then defines it after the import."""
        nodes: list[ast.AST] = [d if isinstance(d, ast.Call) else  # applying it is a call
                                ast.Call(func=d, args=[], keywords=[]) for d in stmt.decorator_list]
        if isinstance(stmt, ast.ClassDef):
            nodes += stmt.bases + [k.value for k in stmt.keywords]
            why, data_names = self._expr(nodes, library_calls=True)
            inside = next((w for w in map(self._why_in_class, stmt.body) if w), "")
            if inside and why in ("", READS_DATA):
                return inside, set()
        else:
            args = stmt.args
            nodes += args.defaults + [d for d in args.kw_defaults if d is not None]
            nodes += [a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs
                      + [args.vararg, args.kwarg] if a is not None and a.annotation is not None]
            if stmt.returns is not None:
                nodes.append(stmt.returns)
            why, data_names = self._expr(nodes, library_calls=True)
        return (RUNS_AT_IMPORT if why == CALLS else why), data_names

    def _why_in_class(self, stmt: ast.stmt) -> str:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return self._plain(self._why_definition(stmt)[0])
        if isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr)
                                          and isinstance(stmt.value, ast.Constant)):
            return ""
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and all(
                isinstance(n, (ast.Name, ast.Tuple, ast.Store, ast.Load))
                for t in _targets(stmt) for n in ast.walk(t)):
            return self._inert([stmt.value] if stmt.value is not None else [])
        return RUNS_AT_IMPORT

    def _why_expression(self, value: ast.expr) -> str:
        if isinstance(value, ast.Constant):       # a docstring or a stray literal
            return ""
        if isinstance(value, ast.Call):
            name, root = _call_name(value.func), _root(value.func)
            if name in self.grader or root in self.grader:
                return SELF_CHECK
            if name in SETUP_CALLS or ast.unparse(value.func) in SETUP_PATHS:
                return self._inert(value.args + [k.value for k in value.keywords] + [value.func])
        why = self._plain(self._expr([value])[0])
        return why if why in (LOADS_DATA, USES_DATA, TRAINS, PLOTS, PRINTS, IPYTHON, CALLS,
                              USES_SKIPPED, RUNS) else SHOWS

    def _why_assignment(self, stmt: ast.Assign | ast.AnnAssign | ast.AugAssign
                        ) -> tuple[str, set[str]]:
        targets = _targets(stmt)
        plain = all(isinstance(n, (ast.Name, ast.Tuple, ast.List, ast.Load, ast.Store))
                    for t in targets for n in ast.walk(t))
        if stmt.value is None:
            return ("" if plain else CHANGES), set()
        why, data_names = self._expr([stmt.value], str_methods="IMPROVEMENTS" in bound(stmt))
        if not plain:
            used, _ = self._expr(targets)
            return (USES_DATA if used in (READS_DATA, USES_DATA) or why in (READS_DATA, USES_DATA)
                    else CHANGES), set()
        if why == READS_DATA and isinstance(stmt, ast.AugAssign):
            why = USES_DATA
        return why, data_names

    def _all_kept(self, body: list[ast.stmt]) -> str:
        return next((self._plain(w) for w, _ in map(self._why, body) if w), "")


def skip_top_level(cell: str, keeper: Filter) -> str:
    """The cell with the statements importing may not run commented out, line for line:
    ``# skipped (why): ...``, or ``# from the grading data (names): ...`` for a statement
    that only reads the data, each further line of the statement ``# skipped, continued: ``."""
    try:
        tree = ast.parse(cell)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
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
        decided = [keeper.why_skipped(s) for s in stmts]
        why = next((w for w, _ in decided if w and w != READS_DATA), "")
        if not why and any(w == READS_DATA for w, _ in decided):
            names = sorted(set().union(*(d for _, d in decided)))
            head = f"{FROM_DATA}{', '.join(names)}): "
        elif why:
            head = f"{SKIPPED}{why}): "
        else:
            continue
        for i in range(first - 1, last):
            lines[i] = (head if i == first - 1 else CONTINUED) + lines[i]
    return "\n".join(lines)


def statements(lines: list[str], prefix: str):
    """(line number, the text in parentheses, code) of each marked statement of a script."""
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            inside, _, code = line[len(prefix):].partition("): ")
            parts, j = [code], i + 1
            while j < len(lines) and lines[j].startswith(CONTINUED):
                parts.append(lines[j][len(CONTINUED):])
                j += 1
            yield i + 1, inside, "\n".join(parts)


def statement_names(code: str) -> set[str]:
    """The names a marked statement binds (none when it does not parse alone)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return set().union(*(bound(s) for s in tree.body)) if tree.body else set()


def demote(script: str, keeper: Filter) -> str:
    """Data-reading statements whose names later code sets again are skipped instead: the
    child, which runs them after the import, would otherwise undo the later value."""
    if not keeper.demoted or FROM_DATA not in script:
        return script
    lines = script.split("\n")
    for number, _, code in list(statements(lines, FROM_DATA)):
        if statement_names(code) & keeper.demoted:
            head = lines[number - 1]
            lines[number - 1] = f"{SKIPPED}{USES_DATA}): " + head.partition("): ")[2]
    return "\n".join(lines)
