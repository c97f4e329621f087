"""The grader's side: one cgroup per sandbox, so that its limits hold for the
sandbox as a whole, however many processes it runs.

:func:`cgroups` finds, once, where this process may make cgroups that have
the ``memory`` and ``pids`` controllers:

- cgroup v2 (a ``cgroup2`` mount whose ``cgroup.controllers`` offers both):
  under this process's own cgroup (the ``0::`` line of ``/proc/self/cgroup``),
  once both controllers are enabled in its ``cgroup.subtree_control``. A
  cgroup that holds processes cannot enable them (the kernel's rule that
  inner cgroups hold none), so the grader first moves itself into a leaf
  below; when other processes share its cgroup, it gives up and says so.
  As root this always works; without root it works where the cgroup is
  delegated to the grader's user (systemd: ``Delegate=yes``).
- cgroup v1 (``memory`` and ``pids`` hierarchies mounted): under this
  process's own cgroup in each.

Nesting under the grader's own cgroup keeps every sandbox inside whatever
limits its caller set. :class:`Box` is one sandbox's cgroup: created with
its limits before the sandbox starts; the sandbox's first process (the
monitor) joins it by writing ``0`` to each of :attr:`Box.procs_files`
before it forks anything; after the end, :meth:`Box.out_of_memory` tells
whether the kernel's OOM killer acted in it, and :func:`remove.remove_cgroup`
kills what is left and removes it.

Imported by the grader only; standard library only.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass

from .core import SandboxError
from .remove import _write_control, remove_cgroup

_CONTROLLERS = ("memory", "pids")
_MOUNTINFO = "/proc/self/mountinfo"
_SELF_CGROUP = "/proc/self/cgroup"


@dataclass(frozen=True)
class Cgroups:
    """Where sandbox cgroups go: ``version`` 2 (one directory, ``parents[""]``),
    1 (``parents["memory"]`` and ``parents["pids"]``) or 0 (none, ``reason`` says why)."""

    version: int
    parents: dict[str, str]
    reason: str

    @property
    def description(self) -> str:
        """For reports: ``cgroup v2 (memory, pids)`` or ``no cgroup: WHY``."""
        return f"cgroup v{self.version} (memory, pids)" if self.version else f"no cgroup: {self.reason}"


def _read(path: str) -> str:
    with open(path) as file:
        return file.read(1 << 20)


def _mounts(mountinfo: str) -> tuple[list[str], dict[str, str]]:
    """(cgroup2 mount points, {v1 controller: its mount point}) of a mountinfo text."""
    v2, v1 = [], {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3 or fields[3] != "/":  # a bind of a subtree is not the hierarchy's root
            continue
        point = fields[4].replace("\\040", " ")
        if after[0] == "cgroup2":
            v2.append(point)
        elif after[0] == "cgroup":
            for option in after[2].split(","):
                if option in _CONTROLLERS:
                    v1.setdefault(option, point)
    return v2, v1


def _own_paths(self_cgroup: str) -> tuple[str | None, dict[str, str]]:
    """(this process's v2 path, {v1 controller: its path}) from /proc/self/cgroup."""
    v2, v1 = None, {}
    for line in self_cgroup.splitlines():
        number, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if number == "0" and names == "":
            v2 = path
        for name in names.split(","):
            if name in _CONTROLLERS:
                v1[name] = path
    return v2, v1


def _join(mount: str, path: str) -> str:
    return os.path.join(mount, path.lstrip("/")).rstrip("/") or "/"


def detect(mountinfo: str, self_cgroup: str, pid: int | None = None) -> Cgroups:
    """Find (and, for v2, prepare) where sandbox cgroups go, from the texts of
    ``/proc/self/mountinfo`` and ``/proc/self/cgroup``; ``pid`` is the process
    moved into a leaf when v2 needs it (this one by default)."""
    v2_mounts, v1_mounts = _mounts(mountinfo)
    v2_path, v1_paths = _own_paths(self_cgroup)
    if all(name in v1_mounts and name in v1_paths for name in _CONTROLLERS):
        parents = {name: _join(v1_mounts[name], v1_paths[name]) for name in _CONTROLLERS}
        for name, parent in parents.items():
            if not os.access(parent, os.W_OK):
                return Cgroups(0, {}, f"cannot create cgroups in {parent} (cgroup v1 {name})")
        return _tried(Cgroups(1, parents, ""))
    if not v2_mounts or v2_path is None:
        return Cgroups(0, {}, "no cgroup v2 hierarchy and no cgroup v1 memory and pids hierarchies")
    own = _join(v2_mounts[0], v2_path)
    try:
        parent = _prepare_v2(own, os.getpid() if pid is None else pid)
    except OSError as exc:
        return Cgroups(0, {}, f"cgroup v2 at {own}: {exc.strerror or exc}")
    except SandboxError as exc:
        return Cgroups(0, {}, str(exc))
    return _tried(Cgroups(2, {"": parent}, ""))


def _tried(found: Cgroups) -> Cgroups:
    """``found``, once a cgroup could be made and removed there (a container
    may show a hierarchy it does not let us change); else none, and why."""
    made = []
    try:
        for parent in found.parents.values():
            probe = os.path.join(parent, f"sandbox-{os.getpid()}-0")
            os.mkdir(probe, 0o755)
            made.append(probe)
    except OSError as exc:
        return Cgroups(0, {}, f"cannot create a cgroup in {os.path.dirname(exc.filename or '')}: {exc.strerror}")
    finally:
        for probe in made:
            try:
                os.rmdir(probe)
            except OSError:
                pass
    return found


def _enabled(directory: str) -> set[str]:
    return set(_read(os.path.join(directory, "cgroup.subtree_control")).split())


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether ``pid`` is ``ancestor`` or one of its descendants."""
    for _ in range(4096):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            data = _read(f"/proc/{pid}/stat")
        except OSError:
            return False
        pid = int(data[data.rindex(")") + 2 :].split()[1])
    return False


def _prepare_v2(own: str, pid: int) -> str:
    """The directory under which sandbox cgroups go: ``own`` with memory and
    pids enabled for its children, after moving ``pid`` and its descendants
    (the zygote, say) into a leaf of their own when ``own`` holds them (a
    cgroup with processes cannot enable controllers for its children)."""
    offered = set(_read(os.path.join(own, "cgroup.controllers")).split())
    missing = [name for name in _CONTROLLERS if name not in offered]
    if missing:
        raise SandboxError(f"cgroup v2 at {own}: the {' and '.join(missing)} controller is not delegated here")
    if set(_CONTROLLERS) <= _enabled(own):
        return own
    request = " ".join(f"+{name}" for name in _CONTROLLERS)
    try:
        _write_control(os.path.join(own, "cgroup.subtree_control"), request)
        return own
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
    leaf = os.path.join(own, f"grader-{pid}")
    os.makedirs(leaf, exist_ok=True)
    moved = [pid] + [int(p) for p in _read(os.path.join(own, "cgroup.procs")).split()
                     if int(p) != pid and _descends_from(int(p), pid)]
    for each in moved:
        try:
            _write_control(os.path.join(leaf, "cgroup.procs"), str(each))
        except ProcessLookupError:
            continue  # gone meanwhile
    try:
        _write_control(os.path.join(own, "cgroup.subtree_control"), request)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        others = _read(os.path.join(own, "cgroup.procs")).split()
        for each in moved:  # back where they were
            try:
                _write_control(os.path.join(own, "cgroup.procs"), str(each))
            except ProcessLookupError:
                continue
        os.rmdir(leaf)
        raise SandboxError(
            f"cgroup v2 at {own}: {len(others)} other process(es) share the grader's cgroup, so it "
            "cannot enable controllers for its children (run it in a cgroup of its own)") from None
    return own


_found_lock = threading.Lock()
_found: Cgroups | None = None


def cgroups() -> Cgroups:
    """This machine's :class:`Cgroups`, found once (see :func:`detect`);
    the cgroups that graders no longer running left there are removed then
    (:func:`sweep`)."""
    global _found
    with _found_lock:
        if _found is None:
            try:
                _found = detect(_read(_MOUNTINFO), _read(_SELF_CGROUP))
            except OSError as exc:
                _found = Cgroups(0, {}, f"cannot read the cgroup setup: {exc.strerror}")
            sweep(_found)
        return _found


_serial_lock = threading.Lock()
_serial = 0


def box_name() -> str:
    """A new sandbox cgroup's name: ``sandbox-PID-N``, after the grader that
    owns it (so that :func:`sweep` can tell when it is gone)."""
    global _serial
    with _serial_lock:
        _serial += 1
        return f"sandbox-{os.getpid()}-{_serial}"


class _Stale:
    def __init__(self, dirs: dict[str, str]) -> None:
        self.dirs = dirs


def sweep(where: Cgroups) -> list[str]:
    """Remove the sandbox cgroups under ``where`` whose grader is no longer
    running (a grader that was killed cannot remove its own), killing what
    is left in them; returns their names. One that cannot be removed stays."""
    names: set[str] = set()
    for parent in where.parents.values():
        try:
            names |= {name for name in os.listdir(parent) if name.startswith("sandbox-")}
        except OSError:
            continue
    removed = []
    for name in sorted(names):
        owner = name.split("-")[1]
        if not owner.isdigit() or int(owner) == os.getpid() or os.path.exists(f"/proc/{owner}"):
            continue
        try:
            remove_cgroup(_Stale({key: os.path.join(parent, name) for key, parent in where.parents.items()}))
            removed.append(name)
        except SandboxError:
            continue
    return removed


class Box:
    """One sandbox's cgroup, created with its limits: ``memory_mib`` for all
    its processes together (swap off), ``pids`` tasks (threads included)."""

    def __init__(self, where: Cgroups, name: str, memory_mib: int, pids: int) -> None:
        if not where.version:
            raise SandboxError(f"no cgroup for the sandbox: {where.reason}")
        self.version = where.version
        self.memory_mib = memory_mib
        self.dirs = {key: os.path.join(parent, name) for key, parent in where.parents.items()}
        remove_cgroup(self)  # one left by a killed grader whose pid this one has now
        limit = str(memory_mib << 20)
        try:
            for directory in self.dirs.values():
                os.mkdir(directory, 0o755)
            if self.version == 2:
                box = self.dirs[""]
                _write_control(os.path.join(box, "memory.max"), limit)
                _write_if_present(os.path.join(box, "memory.swap.max"), "0")
                _write_if_present(os.path.join(box, "memory.oom.group"), "1")
                _write_control(os.path.join(box, "pids.max"), str(pids))
            else:
                memory = self.dirs["memory"]
                _write_control(os.path.join(memory, "memory.limit_in_bytes"), limit)
                _write_if_present(os.path.join(memory, "memory.memsw.limit_in_bytes"), limit)
                _write_control(os.path.join(self.dirs["pids"], "pids.max"), str(pids))
        except OSError as exc:
            remove_cgroup(self)
            raise SandboxError(f"cannot set up the sandbox's cgroup {name}: {exc.strerror} ({exc.filename})") from None

    @property
    def oom_watch(self) -> str | None:
        """cgroup v1: the memory cgroup whose OOM notification a monitor
        watches to end the whole sandbox (v2 does so itself, ``memory.oom.group``)."""
        return self.dirs["memory"] if self.version == 1 else None

    @property
    def procs_files(self) -> list[str]:
        """The files a process writes ``0`` to in order to join the box."""
        return [os.path.join(directory, "cgroup.procs") for directory in self.dirs.values()]

    def tasks(self) -> set[int]:
        """The pids of the processes in the box."""
        found = set()
        for path in self.procs_files:
            try:
                found |= {int(pid) for pid in _read(path).split()}
            except (OSError, ValueError):
                continue
        return found

    def remove(self) -> None:
        """Kill what is left in the box and remove it (:func:`remove.remove_cgroup`)."""
        remove_cgroup(self)

    def out_of_memory(self) -> bool:
        """Whether the kernel's OOM killer killed a process of the box."""
        if self.version == 2:
            events = os.path.join(self.dirs[""], "memory.events")
        else:
            events = os.path.join(self.dirs["memory"], "memory.oom_control")
        try:
            for line in _read(events).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        except (OSError, ValueError):
            pass
        return False


def _write_if_present(path: str, value: str) -> None:
    if os.path.exists(path):
        _write_control(path, value)
