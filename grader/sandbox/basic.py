"""The grader's side of basic mode: a command in a session of its own, as the
grader's user, with the resource limits and, where the kernel has it,
Landlock, under a monitor that watches the grader (``monitor.py``).

:func:`_start_basic` starts an exec'd command (through the monitor,
``__main__.py --basic-monitor``); :func:`_basic_config` is what the monitor
needs, exec'd or forked from the zygote (``forked.py``): limits, Landlock
rules, the sandbox's cgroup where there is one, and whether it counts its
tasks in a user namespace of its own (:func:`_task_count`). Landlock's availability is probed once,
with a self-test (:func:`_landlock`), and :func:`_landlock_rules` writes
what a command may touch, with the hidden paths carved out.

Imported by the grader only; standard library only.
"""

from __future__ import annotations

import errno
import marshal
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .cgroups import Box, box_name, cgroups
from .common import _is_within, _libc_call, _start_time
from .core import (
    _CLEANUP_TIMEOUT_SECONDS, _RLIMITS, _SCRIPT, _SETUP_TIMEOUT_SECONDS, _SYSTEM_PATH, TOKEN_VARIABLE, Limits,
    RunResult, SandboxError, _find_program, _rlimits, _within_hard_limit,
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
    program = _find_program(argv[0], env)
    config, confinement, box = _basic_config(workdir, limits, env, pass_fds, hidden, landlock, program)
    config["argv"] = list(argv)
    started = time.monotonic()
    try:
        status_r, status_w = os.pipe()
        config_r, config_w = os.pipe()
    except BaseException:
        if box:
            box.remove()
        raise
    config["status_fd"] = status_w
    command = [sys.executable, "-I", "-S", "-B", _SCRIPT, "--basic-monitor", str(config_r)]
    try:
        popen = _popen_tracked(
            command, cwd="/", env={"PATH": _SYSTEM_PATH}, start_new_session=True,
            pass_fds=(status_w, config_r, *pass_fds),
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        for fd in (status_r, config_w):
            os.close(fd)
        if box:
            box.remove()
        raise SandboxError(f"cannot start {argv[0]}: {exc}") from exc
    finally:
        os.close(status_w)
        os.close(config_r)
    try:
        with os.fdopen(config_w, "wb") as config_file:  # read at once by the monitor
            config_file.write(marshal.dumps(config))
    except OSError:
        pass  # the monitor died: its status says so
    kind, _, value = _first_status_line(status_r).partition(" ")
    if kind != "ready":
        popen.kill()
        _, stderr = popen.communicate(timeout=_CLEANUP_TIMEOUT_SECONDS)
        untrack(popen.pid)
        os.close(status_r)
        if box:
            box.remove()
        last = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no reason given"]
        why = value if kind == "error" else last[0]
        raise SandboxError(f"the sandbox could not start {argv[0]}: {why}")
    os.set_blocking(status_r, False)
    return SandboxedProcess(
        popen, "basic", limits, started, confinement=confinement, token=env[TOKEN_VARIABLE], status_fd=status_r,
        group=int(value), box=box, resources=config["resources"],
    )  # fmt: skip


def _basic_config(
    workdir: Path,
    limits: Limits,
    env: dict[str, str],
    pass_fds: tuple[int, ...],
    hidden: list[str] | tuple[str, ...],
    landlock: _Landlock | None = None,
    program: str | None = None,
) -> tuple[dict, str, Box | None]:  # type: ignore[type-arg]
    """What basic mode's monitor (``monitor.py``) needs, for an exec'd or a
    forked command: its environment with the run's token, its rlimits, its
    Landlock rules, its cgroup and whether it counts its tasks in a user
    namespace of its own; the confinement it gets; and its cgroup (to
    remove once it has ended), where it has one.

    The grader becomes a child subreaper, so that what the monitor leaves,
    should it be killed, comes to the grader. RLIMIT_NPROC counts the tasks
    of the user (of its user namespace, from Linux 5.14) as they are when a
    task is created: in a user namespace of its own the sandbox has
    ``limits.processes`` tasks whatever its neighbours do; without one the
    budget sits on top of what the user already runs, and a neighbour's
    tasks count against it (the limit :func:`_task_count` reports)."""
    landlock = landlock or _landlock()
    confinement = landlock.confinement
    if hidden and not landlock.abi:
        confinement += " (so the hidden paths stay readable)"
    _become_subreaper()
    env[TOKEN_VARIABLE] = os.urandom(16).hex()
    own_count, why = _task_count()
    processes = limits.processes if own_count else _count_tasks_of_uid(os.getuid()) + limits.processes
    wanted = _rlimits(limits, processes)
    rlimits = {name: _within_hard_limit(_RLIMITS[name], value) for name, value in wanted.items()}
    box = _basic_box(limits)
    found = cgroups()
    resources = [
        found.description if box else f"no cgroup: {found.reason}",
        "tasks counted in a user namespace of its own" if own_count else f"tasks counted with the user's: {why}",
    ]
    config = {
        "mode": "basic",
        "workdir": str(workdir),
        "env": env,
        "pass_fds": list(pass_fds),
        "rlimits": [(_RLIMITS[name], *value) for name, value in rlimits.items()],
        "landlock_abi": landlock.abi,
        "landlock_rules": _landlock_rules(workdir, program, hidden) if landlock.abi else [],
        "grader": [os.getpid(), _start_time(os.getpid())],  # the monitor watches it
        "user_namespace": own_count,
        "cgroup_procs": box.procs_files if box else [],
        "oom_watch": box.oom_watch if box else None,
        "resources": "; ".join(resources),
    }
    return config, confinement, box


def _basic_box(limits: Limits) -> Box | None:
    """A cgroup for a basic sandbox where this process may make one (as
    root, or under a delegated cgroup v2: see ``cgroups.py``), else None."""
    if sys.platform != "linux" or not cgroups().version:
        return None
    return Box(cgroups(), box_name(), limits.memory_mib, limits.processes)


_task_count_lock = threading.Lock()
_task_count_result: tuple[bool, str] | None = None


def _task_count() -> tuple[bool, str]:
    """(True, "") when each basic sandbox can count its tasks in a user
    namespace of its own (checked once), else (False, why not)."""
    global _task_count_result
    with _task_count_lock:
        if _task_count_result is None:
            _task_count_result = _probe_user_namespace()
        return _task_count_result


def _probe_user_namespace() -> tuple[bool, str]:
    if sys.platform != "linux":
        return False, f"user namespaces need Linux, this is {sys.platform}"
    if os.geteuid() == 0:
        return False, "the grader is root, and RLIMIT_NPROC does not hold for root"
    release = tuple(int(part) for part in re.findall(r"\d+", os.uname().release)[:2])
    if release < (5, 14):
        return False, f"Linux {os.uname().release} counts tasks per user, not per user namespace (5.14 or later)"
    try:
        probe = subprocess.run(
            [sys.executable, "-I", "-S", "-B", _SCRIPT, "--probe-user-namespace"], cwd="/",
            env={"PATH": _SYSTEM_PATH}, capture_output=True, timeout=_SETUP_TIMEOUT_SECONDS,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"the user namespace probe failed: {exc}"
    if probe.returncode != 0:
        detail = probe.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no reason given"]
        return False, f"no user namespace for an unprivileged user here: {detail[0]}"
    return True, ""


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
    them reaching into ``hidden`` (resolved paths). The command's fork skips
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
