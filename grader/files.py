"""The grader's own file operations: replacing a file whole, and listing the package's sources.

Every output a reader may open while it is being written (a gradebook, a
report, summary.json, results.json, a bundle, a cache folder) is written
beside its destination under a temporary name, then renamed over it: a
reader sees the old version or the new one, never half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PACKAGE_DIR", "atomic_path", "copy_grader", "grader_sources", "write_atomic"]

PACKAGE_DIR = Path(__file__).resolve().parent


@contextmanager
def atomic_path(path: Path, *, directory: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` (a folder, created, with ``directory``), renamed
    over ``path`` when the block ends; removed instead if the block or the rename fails.

    Renaming a folder onto a folder that is not empty fails (``OSError``): the
    caller decides whether that means someone else finished first.
    """
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8), whole and on disk, or not at all."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())


def grader_sources() -> list[Path]:
    """Every ``.py`` file of the grader package, its subpackages included, in a stable order."""
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def copy_grader(dest: Path) -> Path:
    """Copy the grader's sources (:func:`grader_sources`) into ``dest/grader``, as laid out here;
    returns that folder.  What a bundle or a Ray job ships of the grader."""
    folder = dest / "grader"
    for path in grader_sources():
        target = folder / path.relative_to(PACKAGE_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return folder
