"""The grader's side: starting a sandboxed command, :func:`start` (a program
it execs) and :func:`start_forked` (a command that the zygote forks, which
enters the sandbox itself through ``forked.py``'s :func:`enter_forked`).

Imported by the grader only; standard library only.
"""

from __future__ import annotations

import _socket
import os
import select
import time
from pathlib import Path
from socket import recv_fds as _socket_recv_fds
from typing import Callable

from .basic import _basic_config, _start_basic
from .cgroups import cgroups
from .common import _is_within
from .core import _SETUP_TIMEOUT_SECONDS, TOKEN_VARIABLE, ForkUnavailable, Limits, SandboxError, _find_program
from .full import _full_confinement, _full_config, _start_full
from .isolation import detect_isolation
from .processes import track
from .running import SandboxedProcess, _await_ready, _ForkedMonitor
from .uids import _UidLease


def start(
    argv: list[str],
    workdir: Path,
    limits: Limits,
    env: dict[str, str],
    isolation: str = "auto",
    *,
    pass_fds: tuple[int, ...] | list[int] = (),
    hidden: tuple[str | Path, ...] | list[str | Path] = (),
) -> SandboxedProcess:
    """Start ``argv`` in a sandbox with ``limits``.

    The command runs in ``workdir`` (at the same path in both modes), with
    stdin from /dev/null and exactly ``env`` as its environment (basic mode
    adds :data:`TOKEN_VARIABLE`). ``limits`` apply to the command and to each
    of its descendants.

    In full mode the command's work directory is a fresh tmpfs (capped by
    ``limits.workdir_mib`` and ``limits.workdir_files``) holding a copy of
    ``workdir`` made before the command starts: the host's ``workdir`` is
    never written, and whatever the command writes is gone when the sandbox
    ends. Read results through ``pass_fds``. In basic mode the command
    works in ``workdir`` itself: treat what it leaves there as hostile
    (symlinks, fifos, deep trees, removed permissions) and delete it with
    :func:`remove_tree`.

    ``pass_fds``: descriptors of the caller (3 or above) that the command
    inherits at the same numbers. Nothing else of the sandbox keeps a copy
    once the command runs, so a pipe's reader sees end-of-file once the
    command and every descendant it left are gone. The caller closes its
    own copy of a write end after start() returns.

    ``hidden``: host paths (files or directories; symlinks are resolved,
    missing paths ignored) that the command cannot open even where they lie
    inside a tree the sandbox exposes (the Python installation, the
    virtualenv). Full mode mounts an empty, root-owned, mode-000 tmpfs over a
    hidden directory and an empty mode-000 file over a hidden file; basic
    mode leaves them out of the Landlock rules, so their contents cannot be
    read (the names of the entries of a hidden directory can still be
    listed). Without Landlock basic mode hides nothing: its
    :attr:`SandboxedProcess.confinement` then says so. A path inside the
    work directory is not hidden (in full mode it is copied in). Other hard
    links to a hidden file are not hidden.

    Raises :class:`SandboxError` when the sandbox cannot start.
    """
    if not argv:
        raise ValueError("argv must name a program")
    workdir, fds, hidden_paths = _checked_arguments(workdir, pass_fds, hidden)
    if _find_program(argv[0], env) is None:
        raise SandboxError(f"{argv[0]} is not an executable program")
    level, _ = detect_isolation(isolation)
    if level == "full":
        return _start_full(list(argv), workdir, limits, dict(env), pass_fds=fds, hidden=hidden_paths)
    return _start_basic(list(argv), workdir, limits, dict(env), pass_fds=fds, hidden=hidden_paths)


def _checked_arguments(
    workdir: Path, pass_fds: tuple[int, ...] | list[int], hidden: tuple[str | Path, ...] | list[str | Path]
) -> tuple[Path, tuple[int, ...], list[str]]:
    """:func:`start`'s and :func:`start_forked`'s common arguments, checked:
    the resolved work directory, which must exist, ``pass_fds`` (open
    descriptors of 3 or above; ValueError otherwise) and the hidden paths
    that exist (:func:`_existing_real_paths`)."""
    fds = tuple(pass_fds)
    for fd in fds:
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 3:
            raise ValueError(f"pass_fds holds descriptors of 3 or above, got {fd!r}")
        try:
            os.fstat(fd)
        except OSError as exc:
            raise ValueError(f"pass_fds: descriptor {fd} is not open") from exc
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise SandboxError(f"work directory {workdir} does not exist")
    return workdir, fds, _existing_real_paths(hidden)


def _existing_real_paths(paths: tuple[str | Path, ...] | list[str | Path]) -> list[str]:
    """The resolved absolute paths of those of ``paths`` that exist, without
    duplicates; none of them lies inside another (the outer one covers it)."""
    if isinstance(paths, (str, Path)):
        raise TypeError("hidden must be a sequence of paths, not a single path")
    found = set()
    for path in paths:
        real = os.path.realpath(os.fspath(path))
        if os.path.lexists(real):
            found.add(real)
    return sorted(p for p in found if not any(_is_within(p, other) for other in found if other != p))


def start_forked(
    request: Callable[[dict, list[int]], None],
    workdir: Path,
    limits: Limits,
    env: dict[str, str],
    isolation: str = "full",
    *,
    pass_fds: tuple[int, ...] | list[int] = (),
    hidden: tuple[str | Path, ...] | list[str | Path] = (),
) -> SandboxedProcess:
    """Like :func:`start`, for a command that a zygote forks instead of
    exec'ing: the same sandbox, limits, pass_fds and clean-up, entered by
    the forked process itself (:func:`enter_forked`) before the command
    runs. ``isolation`` is the level :func:`detect_isolation` granted:
    ``full`` (the same namespaces, root and uid) or ``basic`` (the same
    limits, Landlock rules and session of its own; the monitor the zygote
    forks is a child subreaper that kills what the command leaves).

    ``request(config, fds)`` hands the job to the zygote: ``config`` (plain
    data, no secret) and the descriptors it must receive, in order: a status
    socket, ``pass_fds``, the write ends of stdout and stderr. It raises
    OSError when the zygote is gone. Raises :class:`ForkUnavailable` when
    the zygote did not fork (the caller may start the command fresh), and
    :class:`SandboxError` when the sandbox itself failed."""
    workdir, fds, hidden_paths = _checked_arguments(workdir, pass_fds, hidden)
    lease: _UidLease | None = None
    box = None
    if isolation == "full":
        config, lease = _full_config(workdir, limits, dict(env), fds, hidden_paths)
        confinement = _full_confinement()
    else:
        config, confinement, box = _basic_config(workdir, limits, dict(env), fds, hidden_paths)
    config["status_fd"] = next(fd for fd in range(3, 3 + len(fds) + 1) if fd not in fds)
    ours: list[int] = []
    started = time.monotonic()
    try:
        parent_end, child_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        ours.append(parent_end.detach())
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ours += [out_r, err_r]
        try:
            request(config, [child_end.fileno(), *fds, out_w, err_w])
        finally:
            child_end.close()
            os.close(out_w)
            os.close(err_w)
        pid, pidfd = _forked_monitor(ours[0])
    except BaseException as exc:
        for fd in ours:
            os.close(fd)
        if lease is not None:
            lease.release()
        if box is not None:
            box.remove()
        if isinstance(exc, (OSError, ForkUnavailable)):
            raise ForkUnavailable(f"the zygote did not fork: {exc}") from None
        raise
    status_r = ours[0]
    monitor = _ForkedMonitor(pid, pidfd, os.fdopen(out_r, "rb", buffering=0), os.fdopen(err_r, "rb", buffering=0))
    track(pid)
    try:
        value = _await_ready(monitor, status_r, lease)
    except SandboxError:
        if box is not None:
            box.remove()
        raise
    if isolation == "full":
        return SandboxedProcess(
            monitor, "full", limits, started, confinement=confinement, status_fd=status_r,  # type: ignore[arg-type]
            init_pid=int(value), uid_lease=lease, resources=cgroups().description,
        )
    return SandboxedProcess(
        monitor, "basic", limits, started, confinement=confinement, status_fd=status_r,  # type: ignore[arg-type]
        token=config["env"][TOKEN_VARIABLE], group=int(value), box=box, resources=config["resources"],
    )


def _forked_monitor(status_r: int) -> tuple[int, int]:
    """(pid, pidfd) of the monitor that the zygote forked, from its first message."""
    if not select.select([status_r], [], [], _SETUP_TIMEOUT_SECONDS)[0]:
        raise ForkUnavailable("no answer")
    sock = _socket.socket(fileno=status_r)
    try:
        data, fds, _, _ = _socket_recv_fds(sock, 4096, 1)
    finally:
        sock.detach()
    kind, _, value = data.decode(errors="replace").strip().partition(" ")
    if kind != "forked" or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ForkUnavailable(value if kind == "error" else "it did not say so")
    return int(value), fds[0]
