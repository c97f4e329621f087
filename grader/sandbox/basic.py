"""The grader's side of basic mode: a command in a session of its own, as the
grader's user, with the resource limits and, where the kernel has it,
Landlock.

:func:`_start_basic` starts an exec'd command (through prlimit and, with
Landlock, the launcher ``__main__.py --landlock-exec`` of ``landlock.py``);
:func:`_basic_config` is what a command forked from the zygote needs to do
the same itself (``forked.py``). Landlock's availability is probed once,
with a self-test (:func:`_landlock`), and :func:`_landlock_rules` writes
what a command may touch, with the hidden paths carved out.

Imported by the grader only; standard library only.
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .common import _is_within, _libc_call
from .core import (
    _CLEANUP_TIMEOUT_SECONDS, _RLIMITS, _SCRIPT, TOKEN_VARIABLE, Limits, RunResult, SandboxError,
    _find_program, _find_tool, _rlimits, _within_hard_limit,
)  # fmt: skip
from .landlock import (
    _FS_EXECUTE, _FS_MAKE_DIR, _FS_MAKE_FIFO, _FS_MAKE_REG, _FS_MAKE_SOCK, _FS_MAKE_SYM, _FS_READ_DIR,
    _FS_READ_FILE, _FS_REFER, _FS_REMOVE_DIR, _FS_REMOVE_FILE, _FS_TRUNCATE, _FS_WRITE_FILE,
    _LANDLOCK_ABI_KNOWN, _LANDLOCK_CREATE_RULESET_VERSION, _LANDLOCK_SYSCALLS, _landlock_handled,
)  # fmt: skip
from .processes import _become_subreaper, _count_tasks_of_uid, _popen_tracked, untrack
from .running import SandboxedProcess, _first_status_line, _self_test


def _start_basic(
    argv: list[str],
    workdir: Path,
    limits: Limits,
    env: dict[str, str],
    landlock: _Landlock | None = None,
    *,
    pass_fds: tuple[int, ...] = (),
    hidden: list[str] | tuple[str, ...] = (),
) -> SandboxedProcess:
    if landlock is None:
        landlock = _landlock()
    confinement, rlimits = _prepare(landlock, limits, env, hidden)
    prlimit = _find_tool("prlimit") if sys.platform == "linux" else None

    def apply_limits() -> None:  # best effort: macOS refuses some of them
        for name, value in rlimits.items():
            try:
                resource.setrlimit(_RLIMITS[name], value)
            except (ValueError, OSError):
                pass

    command = list(argv)
    status_r = status_w = None
    if landlock.abi:
        # The launcher confines itself with Landlock, then execs the command.
        status_r, status_w = os.pipe()
        spec = [str(status_w), str(landlock.abi)]
        for access, path in _landlock_rules(workdir, _find_program(argv[0], env), hidden):
            spec += [str(access), path]
        launcher = [sys.executable, "-I", "-S", "-B", _SCRIPT, "--landlock-exec"]
        command = [*launcher, *spec, "--", *command]
    if prlimit is not None:
        # A wrapper that sets the limits on itself and execs the command:
        # preexec_fn is not safe while the grader runs threads.
        options = [f"--{name}={soft}:{hard}" for name, (soft, hard) in rlimits.items()]
        command, preexec = [prlimit, *options, "--", *command], None
    else:
        preexec = apply_limits

    started = time.monotonic()
    try:
        popen = _popen_tracked(
            command,
            cwd=workdir,
            env=env,
            start_new_session=True,
            preexec_fn=preexec,
            pass_fds=tuple(pass_fds) + (() if status_w is None else (status_w,)),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        if status_r is not None:
            os.close(status_r)
        raise SandboxError(f"cannot start {argv[0]}: {exc}") from exc
    finally:
        if status_w is not None:
            os.close(status_w)
    if status_r is not None:
        try:
            failure = _first_status_line(status_r)  # "" once the launcher has exec'd
        finally:
            os.close(status_r)
        if failure:
            popen.kill()
            popen.communicate(timeout=_CLEANUP_TIMEOUT_SECONDS)
            untrack(popen.pid)
            raise SandboxError(f"the Landlock launcher could not start {argv[0]}: {failure}")
    return SandboxedProcess(popen, "basic", limits, started, confinement=confinement, token=env[TOKEN_VARIABLE])


def _basic_config(
    workdir: Path, limits: Limits, env: dict[str, str], pass_fds: tuple[int, ...], hidden: list[str]
) -> tuple[dict, str]:  # type: ignore[type-arg]
    """What a forked basic-mode command needs (as :func:`_start_basic` gives
    an exec'd one): its environment with the run's token, its rlimits and
    its Landlock rules; and the confinement it gets."""
    landlock = _landlock()
    # As subreaper, the grader gets what the monitor leaves, should it be killed.
    confinement, rlimits = _prepare(landlock, limits, env, hidden)
    config = {
        "mode": "basic",
        "workdir": str(workdir),
        "env": env,
        "pass_fds": list(pass_fds),
        "rlimits": [(_RLIMITS[name], *value) for name, value in rlimits.items()],
        "landlock_abi": landlock.abi,
        "landlock_rules": _landlock_rules(workdir, None, hidden) if landlock.abi else [],
    }
    return config, confinement


def _prepare(
    landlock: _Landlock, limits: Limits, env: dict[str, str], hidden: list[str] | tuple[str, ...]
) -> tuple[str, dict[str, tuple[int, int]]]:
    """What every basic-mode command gets, exec'd or forked: the grader
    becomes a child subreaper and puts the run's token in ``env``; returns
    the confinement to report and the rlimits, (soft, hard) by prlimit name,
    within the grader's own hard limits. RLIMIT_NPROC counts every process
    and thread of the uid, so the budget sits on top of what the uid already
    runs."""
    confinement = landlock.confinement
    if hidden and not landlock.abi:
        confinement += " (so the hidden paths stay readable)"
    _become_subreaper()
    env[TOKEN_VARIABLE] = os.urandom(16).hex()
    wanted = _rlimits(limits, _count_tasks_of_uid(os.getuid()) + limits.processes)
    return confinement, {name: _within_hard_limit(_RLIMITS[name], value) for name, value in wanted.items()}


@dataclass(frozen=True)
class _Landlock:
    """How basic mode confines its commands: ``abi`` 0 when it cannot."""

    abi: int
    confinement: str


_landlock_lock = threading.Lock()
_landlock_result: _Landlock | None = None


def _landlock() -> _Landlock:
    """Landlock's availability, probed once (with a self-test) and cached."""
    global _landlock_result
    with _landlock_lock:
        if _landlock_result is None:
            _landlock_result = _probe_landlock()
        return _landlock_result


def _probe_landlock() -> _Landlock:
    abi, why_not = _landlock_abi()
    if not abi:
        return _Landlock(0, f"none: {why_not}")
    used = min(abi, _LANDLOCK_ABI_KNOWN)
    _, net, scoped = _landlock_handled(used)
    covered = ["filesystem"] + ["tcp network"] * bool(net) + ["signals, abstract unix sockets"] * bool(scoped)
    candidate = _Landlock(used, f"landlock abi {abi}: {', '.join(covered)}")
    # A command must still start under the rules, and they must hold.
    check = (
        "import os\n"
        "try:\n    os.listdir('..')\nexcept PermissionError:\n    open('probe', 'w').write('confined')\n"
    )

    def confined(result: RunResult, workdir: Path) -> bool:
        probe = workdir / "probe"
        return probe.is_file() and probe.read_text() == "confined"

    def start(argv: list[str], workdir: Path) -> SandboxedProcess:
        return _start_basic(argv, workdir, Limits(), {}, candidate)

    failure = _self_test(start, check, "sandbox-landlock-probe-", confined)
    return _Landlock(0, f"none: the Landlock self-test {failure}") if failure else candidate


def _landlock_abi() -> tuple[int, str]:
    """The kernel's Landlock ABI version, or 0 and why there is none."""
    if sys.platform != "linux":
        return 0, f"Landlock needs Linux, this is {sys.platform}"
    machine = os.uname().machine
    if machine not in _LANDLOCK_SYSCALLS:
        return 0, f"the Landlock system call numbers of {machine} are not known here"
    create = _LANDLOCK_SYSCALLS[machine][0]
    try:
        return _libc_call("syscall", create, None, 0, _LANDLOCK_CREATE_RULESET_VERSION), ""
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return 0, "kernel without Landlock (Linux 5.13 or later)"
        if exc.errno == errno.EOPNOTSUPP:
            return 0, "Landlock is disabled in this kernel (see the lsm= boot parameter)"
        return 0, f"the Landlock version query failed: {exc.strerror}"


def _landlock_rules(
    workdir: Path, program: str | None, hidden: list[str] | tuple[str, ...] = ()
) -> list[tuple[int, str]]:
    """(access, path) pairs: what a basic-mode command may touch, none of
    them reaching into ``hidden`` (resolved paths). The launcher skips
    missing paths and keeps the rights its ABI knows (only file rights on a
    rule for a file)."""
    read = _FS_READ_FILE | _FS_READ_DIR
    read_exec = read | _FS_EXECUTE
    device = _FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE  # shells open /dev/null with O_TRUNC
    work = (
        read | _FS_WRITE_FILE | _FS_TRUNCATE | _FS_REFER | _FS_REMOVE_DIR | _FS_REMOVE_FILE
        | _FS_MAKE_DIR | _FS_MAKE_REG | _FS_MAKE_SYM | _FS_MAKE_FIFO | _FS_MAKE_SOCK
    )  # fmt: skip
    trees = [
        "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
        sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)),
    ]  # fmt: skip
    rules = [(read_exec, os.path.realpath(tree)) for tree in trees]
    if program is not None:  # a relative name is relative to the work directory, where it runs
        rules.append((_FS_READ_FILE | _FS_EXECUTE, os.path.realpath(workdir / program)))
    rules.append((read, "/proc"))
    rules += [(device, f"/dev/{name}") for name in ("null", "zero", "full")]
    rules += [(_FS_READ_FILE, f"/dev/{name}") for name in ("random", "urandom")]
    rules.append((work, str(workdir)))
    unique = list(dict.fromkeys(rules))
    return _carve_out(unique, list(hidden)) if hidden else unique


def _carve_out(rules: list[tuple[int, str]], hidden: list[str]) -> list[tuple[int, str]]:
    """``rules`` rewritten so that none grants anything inside ``hidden``.

    Landlock only allows, so a read rule on a tree that contains a hidden
    path becomes: READ_DIR on the tree (listing stays allowed, as Python's
    imports need) and the rule's file rights on each entry of the tree,
    except the hidden ones, descending only into the directories that
    contain a hidden path. A symlink among those entries would carry its
    rule to its target: one that leads to or around a hidden path is left
    out. Rules with write rights (the work directory, devices) are kept
    as they are; a read rule inside a hidden path is dropped."""
    read_only = _FS_READ_FILE | _FS_READ_DIR | _FS_EXECUTE
    carved: list[tuple[int, str]] = []
    for access, path in rules:
        real = os.path.realpath(path)
        if access & ~read_only:
            carved.append((access, path))
            continue
        if any(_is_within(real, tree) for tree in hidden):
            continue
        inside = [tree for tree in hidden if _is_within(tree, real)]
        if not inside or not os.path.isdir(real):
            carved.append((access, path))
            continue
        file_rights = access & (_FS_READ_FILE | _FS_EXECUTE)
        if access & _FS_READ_DIR:
            carved.append((_FS_READ_DIR, real))
        pending = [(real, inside)]
        while pending:  # breadth of the directories on the way, not their depth
            directory, below = pending.pop()
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            for name in names:
                entry = os.path.join(directory, name)
                if entry in below:
                    continue
                deeper = [tree for tree in below if _is_within(tree, entry)]
                if deeper:  # a real directory: hidden paths are resolved
                    pending.append((entry, deeper))
                    continue
                if os.path.islink(entry):
                    target = os.path.realpath(entry)
                    if any(_is_within(target, tree) or _is_within(tree, target) for tree in hidden):
                        continue
                if file_rights:
                    carved.append((file_rights, entry))
    return carved
