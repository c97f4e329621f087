"""The grading key: the secret that the hidden inputs and seeds are derived from.

Hidden inputs used to come from the rubric's ``seed`` alone, a small integer
that a child could find by trying every candidate against what it was given.
They now come from an HMAC-SHA256 under a key of 256 random bits, kept with
the instructor's rubric: ``grading.key`` beside ``rubric.yaml`` (or the file
``$GRADER_KEY_FILE`` names), created once, on the first grade that needs it,
with mode 0600. It is never in the student bundle or in a sandbox (only what
is derived from it reaches a child: its own tasks' inputs and seeds); the
Gradescope autograder, which is the instructor's, carries it beside its
rubric so that its hidden inputs are the ones its shipped expected values
were computed on. Public inputs and seeds need no key: a student's
self-check computes them exactly as grading does.

Changing the key (or ``seed``) changes every hidden input; the cached
reference outputs follow, as they are keyed by the inputs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .errors import UngradableError

__all__ = ["KEY_BYTES", "KEY_NAME", "KEY_VARIABLE", "derive", "fingerprint", "key_path",
           "load_or_create", "read_existing"]

KEY_NAME = "grading.key"
KEY_VARIABLE = "GRADER_KEY_FILE"
KEY_BYTES = 32              # generated; at least MIN_BYTES are required of a key file
MIN_BYTES = 16
_MAX_FILE = 4096


def key_path(rubric_path: Path) -> Path:
    """Where the key of the rubric at ``rubric_path`` lives: ``$GRADER_KEY_FILE``, else
    ``grading.key`` beside the rubric."""
    override = os.environ.get(KEY_VARIABLE, "").strip()
    return Path(override) if override else Path(rubric_path).resolve().parent / KEY_NAME


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE + 1)
    except OSError as exc:
        raise UngradableError(f"{path}: cannot read the grading key: {exc.strerror}") from None
    try:
        key = bytes.fromhex(raw.decode("ascii").strip()) if len(raw) <= _MAX_FILE else b""
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) < MIN_BYTES:
        raise UngradableError(f"{path}: not a grading key (expected at least {MIN_BYTES * 2} hex "
                              "digits); restore it, or delete it to make a new one "
                              "(the hidden inputs then change)")
    return key


def load_or_create(rubric_path: Path) -> bytes:
    """The rubric's grading key, created (256 random bits, mode 0600) if there is none.

    Creation is atomic: a concurrent grader either creates it or reads the one
    another created, never a half-written file.
    """
    path = key_path(rubric_path)
    if path.exists():
        _make_private(path)
        return _read(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(KEY_BYTES) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if another grader made one first: use theirs
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise UngradableError(f"{path}: cannot create the grading key: {exc.strerror}") from None
    return _read(path)


def _make_private(path: Path) -> None:
    """A key readable by others (unpacked from a zip, copied) is made its owner's alone
    before any child starts: a sandbox's user must not read it."""
    try:
        info = os.stat(path)
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            os.chmod(path, 0o600)
    except OSError:
        pass  # reading it says what is wrong


def read_existing(path: Path) -> bytes | None:
    """The key in the file at ``path``, or None if there is no file (never creates one)."""
    return _read(path) if Path(path).is_file() else None


def fingerprint(key: bytes) -> str:
    """A name for ``key`` that says which key it is and nothing of it (an HMAC of a constant):
    a batch records it, so that a rescore can tell when it is given another key."""
    return hmac.new(key, b"grading key fingerprint", hashlib.sha256).hexdigest()[:16]


def derive(key: bytes, purpose: str, seed: int, name: str) -> int:
    """A 256-bit integer for ``purpose`` (``inputs``, ``child``, ...) of ``name`` (an item
    or a task), under ``key`` and the rubric's ``seed``: unpredictable without the key."""
    message = f"{purpose}:{int(seed)}:{name}".encode()
    return int.from_bytes(hmac.new(key, message, hashlib.sha256).digest(), "big")
