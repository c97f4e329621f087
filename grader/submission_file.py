"""Which file in a student's folder is the submission: one rule for ``batch`` and Gradescope.

The file named as the rubric's ``submission_name`` (``.py``, else ``.ipynb``;
Canvas's resubmission suffix ``-1`` allowed; the shallowest when there are
several), else the only ``.py`` or ``.ipynb`` file.  ``mnist_loader.py``
(provided) is never taken for one; hidden files and folders, ``__MACOSX/``
and the like are not looked at, nor anything deeper than :data:`MAX_DEPTH`
folders or past the first :data:`MAX_FILES` files.

:func:`graded_source` reads the chosen file under ``bounded``'s caps, for
``check``, Gradescope and ``batch`` alike: what cannot be read is a problem
of the student's, never an exception.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import notebook
from .bounded import MAX_PYTHON_BYTES, InputError, read_capped
from .outcome import RowStatus

__all__ = ["IGNORED_NAMES", "MAX_DEPTH", "MAX_FILES", "PROVIDED", "SOURCE_SUFFIXES",
           "find_submission", "graded_source", "is_ignored", "pick", "plain_name", "walk"]

MAX_DEPTH = 16          # folders below a student's folder
MAX_FILES = 10_000      # files of one student looked at

SOURCE_SUFFIXES = (".py", ".ipynb")
PROVIDED = frozenset({"mnist_loader.py"})
IGNORED_NAMES = frozenset({"__MACOSX", "__pycache__", ".ipynb_checkpoints", "Thumbs.db",
                           "desktop.ini"})


def is_ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name in IGNORED_NAMES


def walk(folder: Path, root: Path, ignored: list[dict] | None = None) -> list[Path]:
    """Regular files under ``folder``, in a stable order, noting in ``ignored`` what is left out."""
    ignored = [] if ignored is None else ignored
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        deep = len(base.relative_to(folder).parts) >= MAX_DEPTH
        for name in sorted(dirnames):
            if is_ignored(base / name) or deep:
                ignored.append({"path": str((base / name).relative_to(root)),
                                "reason": f"more than {MAX_DEPTH} folders deep" if deep
                                else "hidden or system folder"})
        dirnames[:] = [] if deep else sorted(d for d in dirnames if not is_ignored(base / d))
        for name in sorted(filenames):
            path = base / name
            if is_ignored(path):
                ignored.append({"path": str(path.relative_to(root)), "reason": "hidden or system file"})
            elif len(found) >= MAX_FILES:
                ignored.append({"path": str(base.relative_to(root)),
                                "reason": f"more than {MAX_FILES} files: the rest not looked at"})
                return found
            else:
                found.append(path)
    return found


def plain_name(path: Path) -> str:
    """The file name without Canvas's resubmission suffix: ``x-1.py`` -> ``x.py``."""
    return re.sub(r"-\d+$", "", path.stem) + path.suffix


def pick(files: list[Path], submission_name: str,
         root: Path) -> tuple[Path | None, RowStatus | None, str]:
    """(the submission, None, "") among one student's files, or (None, why not, reason)."""
    names = ", ".join(sorted({p.name for p in files}))[:300]
    candidates = [p for p in files if p.suffix in SOURCE_SUFFIXES and p.name not in PROVIDED]
    wanted = Path(submission_name)
    for suffix in (".py", ".ipynb"):
        named = [p for p in candidates if plain_name(p) == wanted.stem + suffix]
        if named:
            shallowest = min(named, key=lambda p: (len(p.relative_to(root).parts), str(p)))
            return shallowest, None, ""
    if len(candidates) == 1:
        return candidates[0], None, ""
    if candidates:
        return None, RowStatus.SKIPPED_AMBIGUOUS, (f"several Python files and none named "
                                                   f"{submission_name}: {names}")
    if files:
        return None, RowStatus.SKIPPED_NOT_PYTHON, f"no .py or .ipynb file: {names}"
    return None, RowStatus.SKIPPED_NO_SUBMISSION, "the folder is empty"


def find_submission(folder: Path, submission_name: str) -> Path | None:
    """The submission in ``folder`` (by :func:`pick`), or None."""
    if not folder.is_dir():
        return None
    return pick(walk(folder, folder), submission_name, folder)[0]


def _filtered(submission: Path, data: bytes, folder: Path, script_name: str
              ) -> tuple[Path, str, str]:
    """A ``.py`` that runs the tutorial at import, graded as a notebook's cells are: its
    top-level code skipped (``notebook.filter_script``, which parses only a file of at most
    ``notebook.MAX_FILTERED_BYTES``); else the file as it is."""
    try:
        text = data.decode("utf-8")
        script = notebook.filter_script(text, submission.name)
    except (UnicodeDecodeError, RecursionError, MemoryError, SyntaxError, ValueError):
        script = None   # what Python makes of the file is the child's to report
    if script is None:
        return submission, "", ""
    folder.mkdir()
    path = folder / script_name
    path.write_text(script, encoding="utf-8")
    return path, "", script


def graded_source(submission: Path, folder: Path, script_name: str) -> tuple[Path, str, str]:
    """(the file the child imports, the student's problem or "", the extracted script or "").

    A notebook's code cells become ``folder/script_name``, and so does a ``.py`` that
    runs the tutorial at import, its top-level code skipped; a ``.py`` that ``extract``
    wrote (batch extracts before it grades) keeps its text, so that its lines can be
    named as cells.  A file over the caps, unreadable, or a notebook that cannot be
    read gives a one-line problem, which the report shows as the student's.
    """
    if submission.suffix != ".ipynb":
        try:
            data = read_capped(submission, MAX_PYTHON_BYTES)
        except InputError as exc:
            return submission, str(exc), ""
        head = data[:notebook.MAX_HEADER_CHARS].decode("utf-8", "replace")
        if head.startswith(notebook.HEADER):
            source = data.decode("utf-8", "replace")
            return submission, "", source if notebook.is_extracted(source) else ""
        return _filtered(submission, data, folder, script_name)
    try:
        source = notebook.extract(submission)
    except notebook.NotebookError as exc:
        return submission, str(exc), ""
    folder.mkdir()
    script = folder / script_name
    script.write_text(source, encoding="utf-8", errors="surrogatepass")
    return script, "", source
