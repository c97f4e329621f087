"""Full mode inside the namespaces, still root: the monitor and PID 1.

Run in the child: ``unshare`` execs ``__main__.py --namespace-init CONFIG``
in the new namespaces, which runs :func:`_namespace_monitor`; for a forked
command, ``forked.py`` calls it in the zygote's fork after unsharing the
same namespaces. The monitor forks the init process (PID 1 of the new PID
namespace), which builds the root (``rootfs.py``), chroots into it and
starts the command as the sandbox uid: exec'd through setpriv, or run in a
fork of its own after dropping privileges the way setpriv does.

Standard library only (C modules, ctypes aside): it runs before every
full-mode command, and everything it needs is imported before the chroot.
"""

from __future__ import annotations

import _signal
import ctypes
import os
import select
from typing import Callable

from .common import (
    _PR_SET_NO_NEW_PRIVS, _join_cgroup, _libc_call, _oom_events, _pidfd, _report_end, _run_forked,
    _set_rlimits, _start_time,
)  # fmt: skip
from .rootfs import _build_root

_PR_SET_PDEATHSIG = 1

def _namespace_monitor(config: dict, run: Callable[[dict], None] | None = None) -> None:  # type: ignore[type-arg]
    """The grader's direct child (or, for a forked command, the zygote's), in
    the new namespaces but outside the new PID namespace (whose first process
    it forks): closes its copies of the status pipe and of pass_fds, waits
    for the init process and exits as it did. The kernel has emptied the PID
    namespace by then. If the monitor dies first, the kernel sends the init
    process SIGKILL; if the grader (``config["grader"]``) dies first, the
    monitor does. ``run``: see :func:`_namespace_init`.

    First of all the monitor joins the sandbox's cgroup (``config["cgroup_procs"]``),
    so that every process of the sandbox is in it from its first instruction."""
    try:
        _join_cgroup(config.get("cgroup_procs", ()))
    except OSError as exc:
        os.write(config["status_fd"], f"error cannot join the sandbox's cgroup: {exc}\n".encode())
        os._exit(125)
    lifeline_r, lifeline_w = os.pipe()
    init = os.fork()
    if init == 0:
        monitor_alive = False
        try:
            os.close(lifeline_w)
            _libc_call("prctl", _PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0)
            # The monitor may have died before prctl: then the lifeline is at EOF.
            os.set_blocking(lifeline_r, False)
            try:
                os.read(lifeline_r, 1)
            except BlockingIOError:
                monitor_alive = True
            os.close(lifeline_r)
        except BaseException:
            pass
        if monitor_alive:
            _namespace_init(config, run)
        os._exit(125)
    os.close(lifeline_r)
    for fd in config["pass_fds"]:
        os.close(fd)
    oom = _oom_events(config.get("oom_watch"))
    wait_status, out_of_memory = _wait_for_init(init, config.get("grader"), oom)
    if out_of_memory:
        os.write(config["status_fd"], b"oom\n")
    code = os.waitstatus_to_exitcode(wait_status)
    os._exit(code if code >= 0 else 128 - code)


def _wait_for_init(init: int, grader: list[int] | None, oom: int | None = None) -> tuple[int, bool]:
    """The init process's wait status, once it has ended, and whether the
    sandbox ran out of memory. Should the grader
    (``grader``: its pid and start time) end first, killed perhaps, the
    monitor kills the init process, and the kernel empties the PID namespace:
    no parent-death signal serves here, since the grader starts sandboxes
    from threads, and that signal fires when the starting thread ends.
    So it does when the sandbox's cgroup v1 reports an OOM (``oom``, an
    eventfd): the whole sandbox ends, as cgroup v2's ``memory.oom.group``
    makes it."""
    watched = _pidfd(grader[0]) if grader else -1
    out_of_memory = False
    if watched is None or (watched >= 0 and _start_time(grader[0]) != grader[1]):  # type: ignore[index]
        os.kill(init, _signal.SIGKILL)  # the grader is gone already
    elif watched >= 0:
        init_fd = os.pidfd_open(init)  # the monitor's child: its pid is not reused before the wait
        ended = select.select([watched, init_fd, *([oom] if oom is not None else [])], [], [])[0]
        out_of_memory = oom is not None and oom in ended
        if init_fd not in ended:
            os.kill(init, _signal.SIGKILL)
    _, wait_status = os.waitpid(init, 0)
    return wait_status, out_of_memory


def _namespace_init(config: dict, run: Callable[[dict], None] | None = None) -> None:  # type: ignore[type-arg]
    """Build the new root, start the command unprivileged, reap every
    orphan, report how the command ended on the status pipe and exit (which
    makes the kernel kill whatever is left in the PID namespace).

    The command is ``config["argv"]``, exec'd through setpriv, or, when
    ``run`` is given (a process forked from the zygote), ``run(config)``
    called in the forked process once it is unprivileged: it must not return."""
    status = config["status_fd"]
    os.umask(0o022)
    for signum in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        # PID 1 gets only the signals it handles: let these end the sandbox.
        _signal.signal(signum, lambda signum, frame: os._exit(128 + signum))
    try:
        host_pid = _host_pid()
        _build_root(config)
        os.chdir(config["root"])
        os.chroot(".")
        os.chdir("/")
    except Exception as exc:  # reported to the grader as a SandboxError
        os.write(status, f"error {type(exc).__name__}: {exc}\n".encode())
        os._exit(125)
    os.set_inheritable(status, False)
    os.write(status, f"ready {host_pid}\n".encode())
    child = os.fork()
    if child == 0:
        if run is None:
            _exec_unprivileged(config)
        _run_unprivileged(config, run)
    for fd in config["pass_fds"]:  # only the command holds them now
        os.close(fd)
    _report_end(status, child)
    os._exit(0)


def _host_pid() -> int:
    # /proc is still the host's here, so NSpid lists the host pid first.
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("NSpid:"):
                return int(line.split()[1])
    raise OSError("no NSpid in /proc/self/status")


def _exec_unprivileged(config: dict) -> None:  # type: ignore[type-arg]
    try:
        _set_rlimits(config["rlimits"])
        for signum in (_signal.SIGPIPE, _signal.SIGXFSZ):
            _signal.signal(signum, _signal.SIG_DFL)  # Python ignores them; exec keeps that
        os.chdir(config["workdir"])
        uid = config["uid"]
        drop = [
            config["setpriv"], f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--",
        ]  # fmt: skip
        os.execve(config["setpriv"], drop + config["argv"], config["env"])
    except BaseException as exc:
        os.write(2, f"sandbox: cannot start {config['argv'][0]}: {exc}\n".encode())
    os._exit(127)


def _run_unprivileged(config: dict, run: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    """The forked command: what setpriv and exec do for ``argv``, done in
    this process (a fork of the namespace init, itself a fork of the zygote),
    then ``run(config)``. No byte of the job is read before this point."""

    def setup() -> None:
        os.close(config["status_fd"])  # exec would have closed it (non-inheritable)
        # The init's handlers are Python's; a fresh interpreter has these.
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        for signum in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGCHLD):
            _signal.signal(signum, _signal.SIG_DFL)
        _set_rlimits(config["rlimits"])
        os.chdir(config["workdir"])
        _drop_privileges(config["uid"])

    _run_forked(config, run, setup)


# prctl and capset constants (linux/prctl.h, linux/capability.h).
_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _drop_privileges(uid: int) -> None:
    """What ``setpriv --reuid=UID --regid=UID --clear-groups --no-new-privs
    --inh-caps=-all --bounding-set=-all`` does, in this process."""
    for cap in range(64):  # the bounding set, while CAP_SETPCAP is still held
        try:
            _libc_call("prctl", _PR_CAPBSET_DROP, cap, 0, 0, 0)
        except OSError:
            break  # EINVAL: past the last capability this kernel knows
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears the effective, permitted and ambient sets
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    _libc_call("capset", ctypes.byref(header), ctypes.byref(data))
    _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if os.getuid() != uid or os.geteuid() != uid or os.getgroups():
        raise OSError("the sandbox uid did not take")
