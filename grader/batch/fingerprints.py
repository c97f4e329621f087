"""Code fingerprints for the similarity report: what survives renaming, reformatting and reordering.

copydetect tokenises a file with Pygments and replaces every name with ``V``,
``F`` or ``O`` and every string with ``S``, so that renaming identifiers or
rewording strings changes nothing; comments and whitespace are dropped.  The
k-grams of what is left are hashed here with a hash of our own (copydetect's
``hash()`` is salted per process, and fingerprints are computed in worker
processes), winnowed by copydetect, and the fingerprints of the given code
(the starter, the loader, the reference) are removed: what is left is what a
student wrote.

Each file is fingerprinted in a worker process with a memory limit, and only
its first :data:`MAX_CODE_BYTES` are read: a submission is untrusted text, and
the process that writes the gradebook must not pay for it.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import resource
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

__all__ = ["K", "MAX_CODE_BYTES", "WINDOW", "fingerprint_files", "fingerprint_text"]

K = 20                      # characters of normalised code per k-gram (copydetect's noise_t)
WINDOW = 4                  # winnowing window: any match of K + WINDOW - 1 characters is found
MAX_CODE_BYTES = 256 * 1024  # of a graded file; beyond it, code is not compared
_WORKER_MEMORY = 1 << 30    # bytes of address space per fingerprinting worker
_BASE = np.uint64(1_000_003)


def _kgram_hashes(text: str, k: int = K) -> np.ndarray:
    """A 64-bit polynomial hash of each k-gram of ``text``: the same in every process."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = len(codes) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * _BASE + codes[j:j + n]
    return h.view(np.int64)


def fingerprint_text(code: str, boilerplate: np.ndarray | None = None) -> np.ndarray:
    """The sorted, unique fingerprints of ``code`` (Python source), without ``boilerplate``'s."""
    from copydetect.utils import filter_code, winnow

    filtered, _ = filter_code(code, "submission.py", "python")
    hashes = _kgram_hashes(filtered)
    if len(hashes) == 0:
        return hashes
    selected, _ = winnow(hashes, WINDOW, remove_duplicates=False)
    selected = np.unique(np.asarray(selected, dtype=np.int64))
    if boilerplate is not None and len(boilerplate):
        selected = np.setdiff1d(selected, boilerplate, assume_unique=True)
    return selected


def read_code(path: Path) -> str | None:
    """A graded file as text, or None if it holds more than :data:`MAX_CODE_BYTES` or
    cannot be read (``bounded.read_capped``: a regular file, no link followed)."""
    from ..bounded import InputError, read_capped

    try:
        return read_capped(path, MAX_CODE_BYTES).decode("utf-8", errors="replace")
    except InputError:
        return None


def _limit_worker() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY, _WORKER_MEMORY))


def _one(path: str, boilerplate: np.ndarray) -> np.ndarray | None:
    code = read_code(Path(path))
    return None if code is None else fingerprint_text(code, boilerplate)


def _pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_limit_worker)


def _collect(futures: dict) -> tuple[dict[str, np.ndarray | None], list[str]]:
    result: dict[str, np.ndarray | None] = {}
    broken: list[str] = []
    for name, future in futures.items():
        try:
            result[name] = future.result()
        except BrokenProcessPool:
            broken.append(name)
        except Exception:    # a file the tokenizer cannot take: not compared
            result[name] = None
    return result, broken


def fingerprint_files(paths: dict[str, Path], given: list[Path],
                      workers: int | None = None) -> dict[str, np.ndarray | None]:
    """Each student's fingerprints (None: not compared, the file too large or unreadable),
    without those of the ``given`` files, computed in ``workers`` processes (default: one
    a core; 0: in this process)."""
    names = sorted(paths)
    if workers == 0:   # in this process: for a few files known to be small (tests)
        boilerplate = np.unique(np.concatenate(
            [fingerprint_text(p.read_text(encoding="utf-8")) for p in given if p.is_file()]
            + [np.zeros(0, np.int64)]))
        return {n: _one(str(paths[n]), boilerplate) for n in names}
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), 4, len(paths) or 1))
    with _pool(workers) as pool:
        parts = [pool.submit(_one, str(p), None) for p in given if p.is_file()]
        boilerplate = np.unique(np.concatenate([f.result() for f in parts] + [np.zeros(0, np.int64)]))
        result, broken = _collect({n: pool.submit(_one, str(paths[n]), boilerplate) for n in names})
    for name in broken:   # a worker died (a file beyond its memory?): each alone
        with _pool(1) as pool:
            alone, _ = _collect({name: pool.submit(_one, str(paths[name]), boilerplate)})
        result[name] = alone.get(name)
    return result
