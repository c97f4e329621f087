"""The grader's side of full mode: namespaces, a minimal root, a uid of its own.

:func:`_start_full` runs ``unshare`` on ``__main__.py --namespace-init
CONFIG`` (``namespace.py``: the monitor, then the PID namespace's init,
which builds the root of ``rootfs.py``); :func:`_full_config` is that
configuration, which a command forked from the zygote gets too
(``forked.py``). Needs root on Linux, with util-linux's unshare and setpriv.

Imported by the grader only; standard library only.
"""

from __future__ import annotations

import marshal
import os
import sys
import tempfile
import time
from pathlib import Path

from .cgroups import Box, box_name, cgroups
from .common import _start_time
from .core import _RLIMITS, _SCRIPT, _SYSTEM_PATH, Limits, SandboxError, _find_tool, _rlimits
from .processes import _popen_tracked
from .running import SandboxedProcess, _await_ready
from .uids import _UidLease

_NAMESPACES = "namespaces (network, pid, mount, ipc, uts), minimal chroot, unprivileged uid"


def _full_confinement() -> str:
    """What confines a full sandbox, for reports: the namespaces, and its
    cgroup (``cgroup v1 (memory, pids)``) or why it has none."""
    return f"{_NAMESPACES}, {cgroups().description}"


def _state_dir() -> Path:
    """A root-only directory for uid locks and the new root's mount point."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    path = base / "grader-sandbox"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.is_symlink() or path.stat().st_uid != 0:
        raise SandboxError(f"{path} is not a directory owned by root")
    (path / "uids").mkdir(mode=0o700, exist_ok=True)
    (path / "root").mkdir(mode=0o700, exist_ok=True)
    return path




def _read_only_trees() -> tuple[list[str], list[tuple[str, str]]]:
    """Host directories bound read-only at the same path, and top-level
    symlinks (merged /usr) recreated as they are."""
    binds, links = ["/usr"], []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            links.append((os.readlink(top), top))
        elif os.path.isdir(top):
            binds.append(top)
    python_trees = {sys.base_prefix, sys.prefix}
    python_trees |= {os.path.realpath(tree) for tree in python_trees}
    for tree in sorted(python_trees):
        if not any(tree == bound or tree.startswith(bound + "/") for bound in binds):
            binds.append(tree)
    return binds, links


def _check_full_workdir(workdir: Path, reserved: list[str]) -> None:
    for path in reserved:
        if workdir == Path(path) or Path(path).is_relative_to(workdir) or workdir.is_relative_to(path):
            raise SandboxError(f"work directory {workdir} overlaps {path}, which the sandbox mounts")


def _start_full(
    argv: list[str],
    workdir: Path,
    limits: Limits,
    env: dict[str, str],
    *,
    pass_fds: tuple[int, ...] = (),
    hidden: list[str] | tuple[str, ...] = (),
) -> SandboxedProcess:
    unshare, setpriv = _find_tool("unshare"), _find_tool("setpriv")
    if unshare is None or setpriv is None:
        raise SandboxError("unshare and setpriv (util-linux) are needed for full isolation")
    config, lease = _full_config(workdir, limits, env, pass_fds, hidden)
    try:
        status_r, status_w = os.pipe()
    except BaseException:
        lease.release()
        raise
    config.update(setpriv=setpriv, argv=argv, status_fd=status_w)
    # No --fork: unshare execs __main__.py (the monitor) in the new namespaces,
    # and the monitor forks the namespace's init itself, so that it can
    # close its copies of pass_fds.
    command = [
        unshare, "--net", "--pid", "--mount", "--ipc", "--uts",
        "--", sys.executable, "-I", "-S", "-B", _SCRIPT,
        "--namespace-init", marshal.dumps(config).hex(),
    ]  # fmt: skip
    started = time.monotonic()
    try:
        popen = _popen_tracked(command, cwd="/", env={"PATH": _SYSTEM_PATH}, pass_fds=(status_w, *pass_fds))
    except OSError as exc:
        lease.release()
        os.close(status_r)
        raise SandboxError(f"cannot run {unshare}: {exc}") from exc
    finally:
        os.close(status_w)
    init_pid = int(_await_ready(popen, status_r, lease))
    return SandboxedProcess(
        popen, "full", limits, started, confinement=_full_confinement(), status_fd=status_r,
        init_pid=init_pid, uid_lease=lease, resources=cgroups().description,
    )


def _full_config(
    workdir: Path, limits: Limits, env: dict[str, str], pass_fds: tuple[int, ...], hidden: list[str] | tuple[str, ...]
) -> tuple[dict, _UidLease]:  # type: ignore[type-arg]
    """What the namespace init needs to build a full sandbox for ``workdir``
    (no secret: paths, limits, the uid and the command's environment), and
    the lease on that uid."""
    binds, links = _read_only_trees()
    state = _state_dir()
    _check_full_workdir(workdir, binds + [str(state), "/proc", "/dev", "/etc"])
    lease = _UidLease(state / "uids")
    if cgroups().version:
        try:
            lease.box = Box(cgroups(), box_name(), limits.memory_mib, limits.processes)
        except BaseException:
            lease.release()
            raise
    config = {
        "root": str(state / "root"),
        "binds": binds,
        "links": links,
        "hidden": list(hidden),
        "workdir": str(workdir),
        "workdir_tmpfs": f"size={limits.workdir_mib}m,nr_inodes={limits.workdir_files},mode=700",
        "pass_fds": list(pass_fds),
        "uid": lease.uid,
        "grader": [os.getpid(), _start_time(os.getpid())],  # the monitor watches it
        "rlimits": [(_RLIMITS[name], *value) for name, value in _rlimits(limits, limits.processes).items()],
        "env": env,
        # The monitor joins it before it forks anything (namespace.py).
        "cgroup_procs": lease.box.procs_files if lease.box else [],
        "oom_watch": lease.box.oom_watch if lease.box else None,
    }
    return config, lease
