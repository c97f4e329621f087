"""The helper process that turns one notebook into Python, under limits it sets on itself.

``bounded.notebook_script`` starts it as ``python -I -c <prologue> <package folder>
grader.notebook_reader <limits> <parent pid> <path>``.  Before it reads
anything it caps its address space, CPU time and output file size, and asks
the kernel to kill it if its parent dies.  It then reads the notebook, caps
the number and size of its cells, turns them into Python with
``notebook.script_from_cells``, and prints one JSON object: ``{"script": ...}``,
``{"error": one line}`` for the student's file, or ``{"fault": ...}`` when the
reader itself cannot work.

Nothing of the grader is imported before the limits are set.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from pathlib import Path


def _limit(limits: dict, parent: int) -> None:
    memory, cpu, reply = limits["memory_bytes"], limits["cpu_seconds"], limits["reply_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (reply, reply))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:   # Linux: die with the parent (PR_SET_PDEATHSIG)
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def cells(data: bytes, name: str) -> list:
    """The notebook's cells as ``{"cell_type", "source"}``, in order (format 4, or 3 whose
    worksheets hold them), once their number and size are within the caps.  No schema
    is checked: an old or slightly invalid notebook still has code."""
    from grader.bounded import MAX_CELL_BYTES, MAX_CELLS, MAX_NOTEBOOK_CODE_BYTES, size_text
    from grader.notebook import NotebookError

    try:
        raw = json.loads(data)
    except RecursionError:
        raise NotebookError(f"{name}: nested too deeply to read") from None
    except ValueError as exc:
        raise NotebookError(f"{name}: not a readable Jupyter notebook (not JSON: "
                            f"{str(exc)[:200]})") from None
    if not isinstance(raw, dict):
        raise NotebookError(f"{name}: not a readable Jupyter notebook (not a JSON object)")
    major = raw.get("nbformat")
    if major not in (3, 4):
        shown = major if isinstance(major, (int, float)) else type(major).__name__
        raise NotebookError(f"{name}: not a readable Jupyter notebook (format {shown}: "
                            "formats 4 and 3 are read; save it again from Jupyter)")
    sheets = raw.get("worksheets") if major == 3 else None
    groups = [raw.get("cells")] + ([w.get("cells") for w in sheets if isinstance(w, dict)]
                                   if isinstance(sheets, list) else [])
    found = [c if isinstance(c, dict) else {} for g in groups if isinstance(g, list) for c in g]
    if len(found) > MAX_CELLS:
        raise NotebookError(f"{name}: {len(found)} cells is more than {MAX_CELLS}")
    key = "source" if major == 4 else "input"
    cells, total = [], 0
    for number, cell in enumerate(found, start=1):
        source = cell.get(key, "") if cell.get("cell_type") == "code" else ""
        size = (sum(len(x) for x in source if isinstance(x, str)) if isinstance(source, list)
                else len(source) if isinstance(source, str) else 0)
        if size > MAX_CELL_BYTES:
            raise NotebookError(f"{name}: cell {number} holds {size_text(size)} of code, "
                                f"more than {size_text(MAX_CELL_BYTES)}")
        total += size
        if total > MAX_NOTEBOOK_CODE_BYTES:
            raise NotebookError(f"{name}: its code cells hold more than "
                                f"{size_text(MAX_NOTEBOOK_CODE_BYTES)} of code")
        count = cell.get("execution_count" if major == 4 else "prompt_number")
        cells.append({"cell_type": cell.get("cell_type"), "source": source,
                      "execution_count": count if type(count) is int else None})
    return cells


def _reply(answer: dict) -> None:
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()


def answer(data: bytes, name: str, memory_bytes: int) -> dict:
    """What the reader prints for a notebook of these bytes: ``{"script": ...}``, or
    ``{"error": one line}`` whatever the bytes (in the helper, under its limits)."""
    from grader import notebook

    try:
        return {"script": notebook.script_from_cells(cells(data, name), name)}
    except notebook.NotebookError as exc:
        return {"error": " ".join(str(exc).split())}
    except RecursionError:
        return {"error": f"{name}: nested too deeply to read"}
    except MemoryError:
        return {"error": f"{name}: needs more than {memory_bytes // 2**20} MiB of memory to read"}
    except Exception as exc:   # a bad file may make the conversion raise anything
        first = " ".join((str(exc).strip().splitlines() or [""])[0].split())[:200]
        return {"error": f"{name}: not a readable Jupyter notebook "
                         f"({type(exc).__name__}{': ' + first if first else ''})"}


def main(argv: list[str]) -> None:
    limits, parent, path = json.loads(argv[0]), int(argv[1]), Path(argv[2])
    _limit(limits, parent)
    try:   # what reading needs, loaded before the file is read
        from grader import bounded, notebook  # noqa: F401
    except Exception as exc:   # the reader's own fault, not the notebook's
        _reply({"fault": f"{type(exc).__name__}: {exc}"})
        return
    try:
        data = bounded.read_capped(path, bounded.MAX_SOURCE_BYTES)
    except bounded.InputError as exc:
        _reply({"error": str(exc)})
        return
    _reply(answer(data, path.name, limits["memory_bytes"]))
