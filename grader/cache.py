"""The reference's outputs on the grading inputs: shipped, cached, or computed now.

A result file is a channel frame (``protocol.encode_result``): the cache and
the student bundle's ``grader/expected`` are read back like a child's result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np

from . import config, protocol
from .child import child_sources, output_from_result
from .errors import UngradableError
from .outcome import ProbeOutput
from .plan import Task, planned_seed
from .rubric import Rubric
from .supervise import run_probes


def read_result_file(path: Path, task_id: str, max_bytes: int = protocol.MAX_RESULT_BYTES
                     ) -> ProbeOutput | None:
    """A result saved by save_outputs (the cache, the shipped expected values), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            payload = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    try:
        task, meta, arrays = protocol.decode_result(payload, max_bytes)
    except protocol.ProtocolError:
        return None
    return output_from_result(meta, arrays) if task == task_id else None


def _digest(rubric: Rubric, tasks: list[Task], reference: Path) -> str:
    h = hashlib.sha256()
    cfg = config.CONFIG
    # What the child runs besides the submission (grader/inside/): its results depend on it.
    for path in (reference, cfg.loader, *child_sources(),
                 cfg.project_root / "requirements.txt"):
        if path.is_file():
            h.update(path.read_bytes())
    h.update(json.dumps(rubric.limits, sort_keys=True).encode())
    for t in tasks:
        h.update(json.dumps([t.id, t.item.probe, t.params], sort_keys=True, default=str).encode())
        for key in sorted(t.inputs):
            h.update(key.encode())
            h.update(np.ascontiguousarray(t.inputs[key]).tobytes())
    return h.hexdigest()[:24]


def _load_saved(folder: Path, tasks: list[Task]) -> dict | None:
    out = {}
    for t in tasks:
        result = read_result_file(folder / f"{t.id}.result", t.id)
        if result is None or not result.ok:
            return None
        out[t.id] = result
    return out


def expected_outputs(rubric: Rubric, tasks: list[Task], workroot: Path) -> dict:
    """The reference's outputs on the same inputs: shipped, cached, or computed now."""
    cfg = config.CONFIG
    if not cfg.reference.is_file():
        saved = _load_saved(cfg.expected_dir, tasks)
        if saved is None:
            raise UngradableError("no reference solution and no precomputed expected values "
                                  f"for these checks in {cfg.expected_dir}")
        return saved
    folder = cfg.cache_dir / _digest(rubric, tasks, cfg.reference)
    saved = _load_saved(folder, tasks) if folder.is_dir() else None
    if saved is not None:
        return saved
    results, _, _ = run_probes(cfg.reference, tasks, rubric, "basic", workroot,
                               seed_of=planned_seed, trusted=True)
    failed = {k: v for k, v in results.items() if not v.ok}
    if failed:
        task_id, out = next(iter(failed.items()))
        raise UngradableError(f"the reference solution fails {task_id}: {out.message}")
    _save(folder, tasks, results)
    return results


def save_outputs(folder: Path, tasks: list[Task], results: dict) -> None:
    """Write outputs in the channel's format (``<task>.result``), as read_result_file reads them."""
    for t in tasks:
        out = results[t.id]
        outputs = {**out.meta, **{f"value_{k}": v for k, v in out.arrays.items()}}
        (folder / f"{t.id}.result").write_bytes(protocol.encode_result(t.id, outputs))


def _save(folder: Path, tasks: list[Task], results: dict) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=_ensure(folder.parent)))
    save_outputs(tmp, tasks, results)
    try:
        os.replace(tmp, folder)
    except OSError:  # another grader saved it first
        shutil.rmtree(tmp, ignore_errors=True)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

