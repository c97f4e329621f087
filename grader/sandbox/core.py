"""The grader's side: the sandbox API's data types and errors, and what every
grader-side module of the package shares (timeouts, rlimits, finding the
programs it runs, the path of the child-side entry script).

Imported by the grader only (through ``grader.sandbox``); standard library only.
"""

from __future__ import annotations

import os
import resource
import shutil
from dataclasses import dataclass

#: Name of the environment variable that marks every process of a ``basic`` run.
TOKEN_VARIABLE = "GRADER_SANDBOX_TOKEN"

_CPU_HARD_MARGIN_SECONDS = 5
_SETUP_TIMEOUT_SECONDS = 30.0
_CLEANUP_TIMEOUT_SECONDS = 10.0
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: The child-side programs' entry script (basic mode's monitor and full
#: mode's namespace init): run by path as ``python -I -S -B _SCRIPT
#: --basic-monitor CONFIG_FD`` or ``... --namespace-init CONFIG``.
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to the sandboxed command and its descendants."""

    cpu_seconds: int = 600
    """RLIMIT_CPU per process: SIGXCPU at this soft limit, SIGKILL 5 s later."""
    address_space_mib: int = 4096
    """RLIMIT_AS per process. TensorFlow 2.21 importing and training a small
    model peaks at about 1.45 GiB of address space on 2 cores and aborts
    (std::bad_alloc) under about 1.35 GiB; it needs more on machines with
    more cores (each thread's stack counts), hence the margin."""
    memory_mib: int = 4096
    """Memory (resident, page cache and tmpfs pages included, no swap) of
    the sandbox as a whole, all its processes together: its cgroup's limit,
    where the sandbox has a cgroup (see ``cgroups.py``); beyond it the
    kernel's OOM killer kills in the sandbox (in the whole sandbox on
    cgroup v2), and :attr:`RunResult.out_of_memory` says so."""
    processes: int = 256
    """Processes and threads of the sandbox together: its cgroup's
    ``pids.max`` where it has a cgroup, and RLIMIT_NPROC of its uid (full
    mode: a uid of its own; basic mode: counted in a user namespace of its
    own where the kernel gives one, see ``basic.py``). TensorFlow runs about
    7 threads on 2 cores, more with more cores. Root ignores RLIMIT_NPROC."""
    file_size_mib: int = 64
    """RLIMIT_FSIZE: largest file the command can write."""
    open_files: int = 256
    """RLIMIT_NOFILE."""
    output_bytes: int = 64 * 1024
    """Bytes of stdout and of stderr (each) kept; the rest is discarded."""
    workdir_mib: int = 256
    """Full mode: size of the tmpfs that holds the work directory (the
    grader's files copied in included); writing beyond it fails with ENOSPC.
    Basic mode has no such cap (only file_size_mib per file)."""
    workdir_files: int = 4096
    """Full mode: inodes of that tmpfs (files, directories and links, the
    copied ones and the directory itself included); ENOSPC beyond. Basic
    mode has no cap on the number of files."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class RunResult:
    """What a finished sandboxed command did."""

    returncode: int
    """Exit status; minus the signal number when a signal killed it."""
    signal: int | None
    """The signal that killed it, or None when it exited."""
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    wall_seconds: float
    """From start() to the exit, sandbox setup included."""
    killed_by_us: bool
    """True when kill() was called before the command ended by itself."""
    out_of_memory: bool = False
    """True when the sandbox reached :attr:`Limits.memory_mib` and the
    kernel's OOM killer killed one of its processes (only where the sandbox
    has a cgroup)."""


class SandboxError(Exception):
    """The sandbox itself cannot start or clean up: a grader fault, never a
    student's zero."""


# prlimit(1)'s names for the limits set.
_RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
}


def _rlimits(limits: Limits, processes: int) -> dict[str, tuple[int, int]]:
    """(soft, hard) by name; hard equals soft (so the command cannot raise
    it) except for CPU time, where SIGKILL follows SIGXCPU."""
    mib = 1 << 20
    return {
        "cpu": (limits.cpu_seconds, limits.cpu_seconds + _CPU_HARD_MARGIN_SECONDS),
        "as": (limits.address_space_mib * mib,) * 2,
        "nproc": (processes,) * 2,
        "fsize": (limits.file_size_mib * mib,) * 2,
        "nofile": (limits.open_files,) * 2,
        "core": (0, 0),
    }


def _find_program(name: str, env: dict[str, str]) -> str | None:
    """The executable file that ``name`` runs, as execvp finds it with ``env``."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name, path=env.get("PATH", os.defpath))


def _find_tool(name: str) -> str | None:
    found = shutil.which(name, path=_SYSTEM_PATH)
    # The tools run inside the new root too, where only /usr, /bin and /sbin exist.
    if found and found.startswith(("/usr/", "/bin/", "/sbin/")):
        return found
    return None


def _within_hard_limit(which: int, value: tuple[int, int]) -> tuple[int, int]:
    """``value`` lowered to this process's hard limit, which an unprivileged
    process cannot raise (when already nested in a sandbox, say)."""
    try:
        _, hard = resource.getrlimit(which)
    except (ValueError, OSError):
        return value
    if hard == resource.RLIM_INFINITY:
        return value
    return min(value[0], hard), min(value[1], hard)


class ForkUnavailable(SandboxError):
    """The zygote could not fork this command (it is gone, or refused):
    nothing of the command ran; start it fresh instead."""
