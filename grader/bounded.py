"""Reading what a submission or an export holds, under a bound.

Every byte the parent reads from a student's file or from an LMS export goes
through here.  A parser's time and memory are chosen by its input (YAML
aliases, a 200,000-term expression, a 4 MiB list literal), so each reader
caps first and parses second:

- a file is read only when it is a regular file no larger than its cap, and
  a file over the cap is refused, never truncated;
- YAML is walked event by event before any object is built: an alias or an
  anchor is refused, and so are too many values or too deep a nesting;
- a notebook (JSON, then code cells compiled and walked by ``notebook``) is
  turned into Python in a helper process (``notebook_reader``) that limits its
  own address space, CPU time and output before it reads the file, under a
  wall clock of the parent's.  The parent reads back one JSON object of
  bounded size.  A plain ``.py`` is never parsed in the parent: its size is
  capped, and only its first line is looked at.

A file that fails any of these is the student's: :class:`InputError` carries
one line that says which file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .errors import UngradableError

__all__ = ["InputError", "MAX_CELLS", "MAX_CELL_BYTES", "MAX_METADATA_BYTES",
           "MAX_NOTEBOOK_CODE_BYTES", "MAX_PYTHON_BYTES",
           "MAX_PYTHON_LINES", "MAX_SOURCE_BYTES", "NOTEBOOK_LIMITS", "load_yaml",
           "notebook_script", "read_capped", "size_text"]

MAX_SOURCE_BYTES = 32 * 2**20     # a submission file as found (notebooks carry their outputs)
MAX_PYTHON_BYTES = 4 * 2**20      # the Python graded: a .py, or a notebook's code cells
MAX_PYTHON_LINES = 200_000        # lines of that Python
MAX_CELLS = 5_000                 # cells of a notebook
MAX_CELL_BYTES = 256 * 2**10      # the source of one cell
MAX_NOTEBOOK_CODE_BYTES = 2**20   # the sources of all its cells
MAX_METADATA_BYTES = 16 * 2**20   # an export's metadata file
MAX_YAML_NODES = 200_000          # scalars, sequences and mappings of a YAML document
MAX_YAML_DEPTH = 64               # nesting of a YAML document


# What the notebook helper may take: address space, CPU seconds, the parent's
# wall clock, and the bytes of its reply (the script JSON-escaped, at worst 6x).
NOTEBOOK_LIMITS = {"memory_bytes": 1536 * 2**20, "cpu_seconds": 20, "wall_seconds": 60,
                   "reply_bytes": 6 * MAX_PYTHON_BYTES + 2**16}


class InputError(Exception):
    """A file of a submission or an export that cannot be read within the bounds.

    Its message is one line, naming the file and the problem.
    """


def size_text(size: int) -> str:
    """``size`` bytes for a person: ``40 MiB``, ``512 KiB``, ``12 bytes``."""
    if size >= 2**20:
        return f"{size / 2**20:.0f} MiB"
    if size >= 2**10:
        return f"{size / 2**10:.0f} KiB"
    return f"{size} bytes"


def read_capped(path: Path, limit: int, what: str = "") -> bytes:
    """The bytes of the regular file ``path``; InputError when it is larger than ``limit``,
    not a regular file, or cannot be read.  Links are not followed."""
    name = what or path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"{name}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{name}: not a regular file")
        if info.st_size > limit:
            raise InputError(f"{name}: {size_text(info.st_size)} is more than "
                             f"{size_text(limit)}")
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise InputError(f"{name}: cannot be read ({exc.strerror or type(exc).__name__})"
                             ) from None
    if len(data) > limit:   # it grew while read
        raise InputError(f"{name}: more than {size_text(limit)}")
    return data


# libyaml's parser and loader where PyYAML has them (50x faster), else PyYAML's own.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_yaml(text: str, what: str) -> None:
    """Walk the document's events (no object is built yet): refuse an alias or an anchor,
    more than MAX_YAML_NODES values, or nesting deeper than MAX_YAML_DEPTH."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise InputError(f"{what}: an alias or anchor (&, *) at line "
                             f"{event.start_mark.line + 1}: not accepted")
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise InputError(f"{what}: more than {MAX_YAML_NODES} values")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise InputError(f"{what}: nested more than {MAX_YAML_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_yaml(data: bytes | str, what: str) -> object:
    """The YAML document in ``data`` (already capped in size); InputError naming ``what``."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        _check_yaml(text, what)
        return yaml.load(text, Loader=_YAML_LOADER)
    except UnicodeDecodeError:
        raise InputError(f"{what}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        problem = getattr(exc, "problem", None)
        mark = getattr(exc, "problem_mark", None)
        if problem and mark is not None:
            first = f"{problem} at line {mark.line + 1}"
        raise InputError(f"{what}: not valid YAML ({' '.join(first.split())[:200]})") from None
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{what}: cannot be read as YAML ({type(exc).__name__})") from None


def notebook_script(path: Path) -> str:
    """The Python of the notebook at ``path`` (``notebook``'s extraction), computed in a
    helper process under :data:`NOTEBOOK_LIMITS`; InputError for the student's file."""
    name = path.name
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InputError(f"{name}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{name}: not a regular file")
    if info.st_size > MAX_SOURCE_BYTES:
        raise InputError(f"{name}: {size_text(info.st_size)} is more than "
                         f"{size_text(MAX_SOURCE_BYTES)}")
    reply = _run_helper("grader.notebook_reader", [str(path)], NOTEBOOK_LIMITS)
    if isinstance(reply, dict) and isinstance(reply.get("error"), str):
        raise InputError(" ".join(reply["error"].split())[:300])
    if isinstance(reply, dict) and isinstance(reply.get("fault"), str):
        raise UngradableError(f"the notebook reader failed: {reply['fault'][:300]}")
    if not isinstance(reply, dict) or not isinstance(reply.get("script"), str):
        raise InputError(f"{name}: the notebook reader gave no script")
    return reply["script"]


# The helper's command line: the package's folder, the module, then the module's arguments.
_PROLOGUE = ("import sys; sys.path.insert(0, sys.argv[1]); import importlib; "
             "importlib.import_module(sys.argv[2]).main(sys.argv[3:])")


def _run_helper(module: str, args: list[str], limits: dict) -> object:
    """Run ``module.main(args)`` in a fresh Python (isolated mode, no stdin), give it
    ``limits`` (it sets them on itself before reading anything), and return the JSON
    object it prints.  Its wall clock is kept here; it dies with this process."""
    package_root = str(Path(__file__).resolve().parent.parent)
    command = [sys.executable, "-I", "-B", "-c", _PROLOGUE, package_root,
               module, json.dumps({k: v for k, v in limits.items() if k != "wall_seconds"}),
               str(os.getpid()), *args]
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            raise UngradableError(f"the notebook reader cannot start: {exc}") from None
        try:
            code = proc.wait(timeout=limits["wall_seconds"])
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise InputError(f"{Path(args[0]).name}: not read within {limits['wall_seconds']} s"
                             ) from None
        except BaseException:       # Ctrl-C while waiting: the helper goes too
            proc.kill()
            proc.wait()
            raise
        size = os.fstat(out.fileno()).st_size
        too_long = size > limits["reply_bytes"]
        if code != 0 or size == 0 or too_long:
            why = ("its CPU time ran out" if code == -signal.SIGXCPU
                   else "too long an answer" if code == -signal.SIGXFSZ or too_long
                   else f"killed by signal {-code}" if code < 0
                   else f"exit status {code}" if code != 0 else "no answer")
            raise InputError(f"{Path(args[0]).name}: cannot be read within the limits "
                             f"({size_text(limits['memory_bytes'])} of memory, "
                             f"{limits['cpu_seconds']} s of CPU: {why})")
        out.seek(0)
        try:
            return json.loads(out.read().decode("utf-8"))
        except (ValueError, RecursionError):
            raise InputError(f"{Path(args[0]).name}: the notebook reader's answer is not "
                             "readable") from None
