"""Run an untrusted command with isolation and resource limits.

The trusted grader uses this module to start the child Python process that
imports a student's submission. It depends on the standard library only and
never imports TensorFlow.

Two isolation levels exist:

``full`` (the grader runs as root on Linux)
    ``unshare`` puts the child in new network, PID, mount, IPC and UTS
    namespaces and execs this file as a script (``--namespace-init``): a
    monitor, the grader's direct child, which forks the init process (PID 1
    of the new PID namespace, still root). The init builds a minimal root on
    a tmpfs, chroots into it and starts the command through ``setpriv`` as an
    unprivileged uid/gid that no other live sandbox uses. Inside, the command
    sees:

    - ``/usr``, ``/bin``, ``/sbin``, ``/lib*`` and the Python installation
      (``sys.base_prefix`` and the virtualenv ``sys.prefix``, each at its own
      path) read-only, except the ``hidden`` paths given to :func:`start`:
      an empty, root-owned, mode-000 tmpfs covers a hidden directory and an
      empty mode-000 file a hidden file, so neither can be opened (through
      any of the paths at which the sandbox shows that tree);
    - a synthetic ``/etc`` (passwd, group, hosts and the loader cache);
    - fresh tmpfs mounts on ``/tmp`` and ``/dev/shm``, a minimal ``/dev`` and
      the ``/proc`` of its own PID namespace (other users' processes hidden);
    - its work directory at the host work directory's path (so absolute
      paths mean the same in both modes), which is also its current
      directory: a fresh tmpfs of its own (``Limits.workdir_mib`` MiB and
      ``Limits.workdir_files`` inodes, nosuid, nodev, owned by the sandbox
      uid, mode 0700) into which the init, before dropping privileges,
      copied the host work directory (directories, regular files with their
      modes and times, symlinks as links, never followed; nothing else).
      Writing beyond either cap fails with ENOSPC (or EFBIG from
      ``Limits.file_size_mib``, whichever comes first). The host work
      directory is never written, chowned or read again by the sandbox, and
      what the command writes vanishes with the mount namespace: results
      travel through ``pass_fds``. The directories above it exist but are
      empty;
    - a network namespace holding only the loopback interface.

    Nothing else of the host exists there: not the repository, not ``/root``,
    not the grader's temporary files. When the command exits, or when the
    grader calls :meth:`SandboxedProcess.kill`, the init process dies and the
    kernel kills every process left in the PID namespace; if the monitor is
    killed, the kernel kills the init process (parent-death signal).

``basic`` (not root, e.g. a student's laptop)
    A child process in a new session, as the grader's own user, with the
    same resource limits. The grader becomes a child subreaper, so that
    daemonized grandchildren are re-parented to it; when the command exits
    or is killed, its process group, every orphan re-parented to the grader
    and every process carrying the run's random token in its environment are
    killed and reaped. When the grader itself runs as root the process limit
    is not enforced by the kernel. The cleanup also kills any other child of
    the grader that started its own session, so a grader using basic mode
    should not run such children of its own.

    The command works in the host work directory itself, with no cap on
    its total size or number of files (only ``Limits.file_size_mib`` per
    file): what it leaves there is hostile (symlinks out, fifos, sockets,
    5,000-level directory chains, permissions removed) and
    :func:`remove_tree` removes it safely.

    Where the kernel has Landlock (Linux 5.13 or later, enabled at boot), a
    small launcher (this file run as a script, ``--landlock-exec``) sets
    ``no_new_privs`` and confines itself just before it execs the command;
    the command and all its descendants stay confined, root included:

    - files: read and execute under ``/usr``, ``/bin``, ``/sbin``,
      ``/lib*``, ``/etc``, the Python installation and the virtualenv (and
      the command's own executable), except the ``hidden`` paths: a tree
      holding one is granted listing as a whole, and read and execute on
      each of its entries but the hidden ones, descending only into the
      directories that hold a hidden path (so the names in a hidden
      directory can be listed, its files not opened); read under ``/proc``;
      read and write
      ``/dev/null``, ``/dev/zero`` and ``/dev/full``; read ``/dev/random``
      and ``/dev/urandom``; read, write, create, rename and remove (not
      execute) in the work directory. Nothing else can be opened: not the
      repository with the reference solution and the rubric, not the home
      directory, not ``/tmp`` outside the work directory, not ``/sys`` (the
      C library and TensorFlow fall back to ``/proc`` and system calls) and
      not ``/dev/shm`` (so no POSIX semaphores for ``multiprocessing``).
      Give the command a ``HOME`` and a ``TMPDIR`` inside the work
      directory: TensorFlow's Keras fails on a ``~/.keras/keras.json`` it
      sees but cannot read. Moving files between directories needs ABI 2
      (Linux 5.19); before that the kernel refuses it (EXDEV).
    - network, from ABI 4 (Linux 6.7): no TCP bind or connect, loopback
      included.
    - scoping, from ABI 6 (Linux 6.12): no signal to a process outside the
      sandbox (the grader included) and no connection to an abstract UNIX
      socket created outside it.
    - at every ABI, no ptrace of a process outside the sandbox: its memory
      cannot be read through ``/proc`` and, unless the command runs as root,
      neither can its environment or memory map.

    Even with Landlock, basic mode does not stop: UDP and other non-TCP
    traffic (datagrams can leave the machine); connecting to a UNIX socket
    that has a path (a session bus, a Docker socket); ``stat``, ``access``
    and ``chdir`` on any path (whether a file exists outside can be probed,
    though it cannot be opened and directories outside cannot be listed);
    reading every process's command line in ``/proc`` and the system's
    ``/etc`` (within its permissions); System V IPC with other processes of
    the same user. It gives no separate uid, PID or network namespace. The
    launcher uses the kernel's ABI up to the newest one it knows
    (:data:`_LANDLOCK_ABI_KNOWN`) and only the rights of that ABI.

    Without Landlock (an older kernel, Landlock disabled, another OS, or a
    failed self-test) basic mode confines nothing: the command can read and
    write whatever the grader's user can, the reference solution, the rubric
    and the ``hidden`` paths included, use the network and signal the
    grader.
    :attr:`SandboxedProcess.confinement` and the reason from
    :func:`detect_isolation` say which case applies.

In both modes the ``pass_fds`` given to :func:`start` reach the command at
the same numbers through every layer (prlimit and the Landlock launcher,
which exec; unshare, which execs; the monitor and the init process, which
close their copies as soon as they have forked; setpriv, which execs), so
that only the command and its descendants hold them: a pipe's reader sees
end-of-file once they are all gone, daemons included (the run's clean-up
kills them).

Forked commands (:func:`start_forked`): instead of exec'ing a program, a
long-lived process that has already loaded what the command needs (the
grader's zygote, ``zygote_server.py``) forks it, and the fork calls
:func:`enter_forked`, which puts it in the same sandbox before it runs
anything of the job. In full mode it unshares the same namespaces itself
and forks the PID namespace's init, which builds the same root, chroots and
forks the command; the command sets the same limits and drops to the
sandbox uid with what setpriv gives (no supplementary groups, empty
capability sets, no-new-privileges). In basic mode the fork is a child
subreaper that starts the command in a session of its own with the same
limits and Landlock rules, and kills whatever it leaves. The job's
descriptors travel over a UNIX socket (SCM_RIGHTS) and land at their
pass_fds numbers; the grader watches and signals the fork through its
pidfd. The :class:`SandboxedProcess` it gets works as for :func:`start`.

Wall-clock budgets are the caller's job: poll() and kill() (or wait() with a
timeout) give it what it needs.
"""

from __future__ import annotations

# The Landlock launcher (``--landlock-exec``, below) runs this file as a
# script before every basic-mode command: it needs only these modules, and
# dispatches before the grader's own imports so that it starts quickly.
import ctypes
import os
import stat
import sys

# --------------------------------------------------------------------------
# Landlock (basic mode): the launcher side
# --------------------------------------------------------------------------

# landlock_create_ruleset, landlock_add_rule, landlock_restrict_self: these
# machines use the generic system call table (asm-generic/unistd.h) or, on
# x86_64, the same numbers.
_LANDLOCK_SYSCALLS = {machine: (444, 445, 446) for machine in ("x86_64", "aarch64", "riscv64")}
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
#: The newest Landlock ABI whose access rights this module knows; a newer
#: kernel is used at this level.
_LANDLOCK_ABI_KNOWN = 7

# Filesystem access rights (ABI 1 unless noted).
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REMOVE_DIR = 1 << 4
_FS_REMOVE_FILE = 1 << 5
_FS_MAKE_CHAR = 1 << 6
_FS_MAKE_DIR = 1 << 7
_FS_MAKE_REG = 1 << 8
_FS_MAKE_SOCK = 1 << 9
_FS_MAKE_FIFO = 1 << 10
_FS_MAKE_BLOCK = 1 << 11
_FS_MAKE_SYM = 1 << 12
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
# The only rights a rule on a file (not a directory) may grant.
_FS_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
# Network (ABI 4) and scoping (ABI 6).
_NET_BIND_TCP = 1 << 0
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
_SCOPE_SIGNAL = 1 << 1


def _landlock_handled(abi: int) -> tuple[int, int, int]:
    """Every filesystem right, network right and scope that ``abi`` knows:
    all of them are denied except what a rule grants."""
    fs = (1 << 13) - 1  # ABI 1: EXECUTE to MAKE_SYM
    if abi >= 2:
        fs |= _FS_REFER
    if abi >= 3:
        fs |= _FS_TRUNCATE
    if abi >= 5:
        fs |= _FS_IOCTL_DEV
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    return fs, net, scoped


class _PathBeneath(ctypes.Structure):
    """struct landlock_path_beneath_attr (packed)."""

    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc_call(function: str, *args: object) -> int:
    """Call the C library's ``function``, passing integers as C longs (as
    variadic ``syscall`` and ``prctl`` read them); OSError when it fails."""
    call = getattr(ctypes.CDLL(None, use_errno=True), function)
    call.restype = ctypes.c_long
    result = call(*(ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args))
    if result == -1:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result


def _landlock_restrict_self(abi: int, rules: list[tuple[int, str]]) -> None:
    """Confine this thread, and whatever it execs, to ``rules`` ((access,
    path) pairs; missing paths are skipped) with every right of ``abi``
    handled: nothing else on the filesystem, no TCP bind or connect (there
    is no network rule) and, from ABI 6, signals and abstract UNIX sockets
    scoped to the sandbox."""
    create, add_rule, restrict = _LANDLOCK_SYSCALLS[os.uname().machine]
    fs, net, scoped = _landlock_handled(abi)
    # The kernel takes the structure as long as the ABI knows it: 8, 16 or 24 bytes.
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = _libc_call("syscall", create, ctypes.byref(attr), size, 0)
    try:
        for access, path in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= _FS_FILE_RIGHTS
                rule = _PathBeneath(access & fs, fd)
                if rule.allowed_access:
                    kind = _LANDLOCK_RULE_PATH_BENEATH
                    _libc_call("syscall", add_rule, ruleset, kind, ctypes.byref(rule), 0)
            except OSError as exc:
                raise OSError(exc.errno, f"Landlock rule for {path}: {exc.strerror}") from None
            finally:
                os.close(fd)
        _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # landlock_restrict_self requires it
        _libc_call("syscall", restrict, ruleset, 0)
    finally:
        os.close(ruleset)


def _landlock_exec(args: list[str]) -> None:
    """The launcher: ``--landlock-exec STATUS_FD ABI [ACCESS PATH]... -- ARGV...``.

    Restricts itself with Landlock and execs ARGV (searched in PATH). On
    failure it writes why on STATUS_FD and exits 126; the grader sees
    STATUS_FD close without a word when the exec succeeds."""
    end = args.index("--")
    status = int(args[0])
    try:
        rules = [(int(access), path) for access, path in zip(args[2:end:2], args[3:end:2])]
        _landlock_restrict_self(int(args[1]), rules)
        argv = args[end + 1 :]
        # The interpreter ignores these two signals, and exec would keep that.
        import _signal  # the C core of signal, without its slower enum import

        for signum in (_signal.SIGPIPE, _signal.SIGXFSZ):
            _signal.signal(signum, _signal.SIG_DFL)
        os.set_inheritable(status, False)
        os.execvp(argv[0], argv)
    except Exception as exc:
        os.write(status, f"{type(exc).__name__}: {exc}\n".encode(errors="replace"))
    os._exit(126)


if __name__ == "__main__" and sys.argv[1:2] == ["--landlock-exec"]:
    _landlock_exec(sys.argv[2:])

# --------------------------------------------------------------------------
# Full mode inside the namespaces, still root (``--namespace-init``): the
# monitor, then PID 1. This file runs as a script before every full-mode
# command: this part needs only these modules (C modules, ctypes aside),
# and dispatches before the grader's own imports so that it starts quickly.
# --------------------------------------------------------------------------

import _signal  # noqa: E402
import _socket  # noqa: E402
import fcntl  # noqa: E402
import marshal  # noqa: E402
import resource  # noqa: E402
import struct  # noqa: E402
from typing import Callable  # noqa: E402

# Sizes of the tmpfs mounts inside a full sandbox.
_ROOT_TMPFS = "size=8m,nr_inodes=4096,mode=755"
_TMP_TMPFS = "size=256m,nr_inodes=16384,mode=1777"
_SHM_TMPFS = "size=64m,nr_inodes=4096,mode=1777"
_DEV_TMPFS = "size=64k,nr_inodes=64,mode=755"

# Host files copied into the sandbox's /etc when they exist.
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "nsswitch.conf", "host.conf", "localtime")
_DEVICES = ("null", "zero", "full", "random", "urandom")

# Linux constants not exposed by the standard library.
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_PR_SET_PDEATHSIG = 1


def _is_within(path: str, tree: str) -> bool:
    """Whether ``path`` is ``tree`` or lies below it (both absolute, normalised)."""
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _namespace_monitor(config: dict, run: Callable[[dict], None] | None = None) -> None:  # type: ignore[type-arg]
    """The grader's direct child (or, for a forked command, the zygote's), in
    the new namespaces but outside the new PID namespace (whose first process
    it forks): closes its copies of the status pipe and of pass_fds, waits
    for the init process and exits as it did. The kernel has emptied the PID
    namespace by then. If the monitor dies first, the kernel sends the init
    process SIGKILL. ``run``: see :func:`_namespace_init`."""
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
    for fd in [config["status_fd"], *config["pass_fds"]]:
        os.close(fd)
    _, wait_status = os.waitpid(init, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    os._exit(code if code >= 0 else 128 - code)


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
    while True:
        pid, wait_status = os.wait()
        if pid == child:
            if os.WIFSIGNALED(wait_status):
                os.write(status, f"signal {os.WTERMSIG(wait_status)}\n".encode())
            else:
                os.write(status, f"exit {os.waitstatus_to_exitcode(wait_status)}\n".encode())
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
        for which, soft, hard in config["rlimits"]:
            resource.setrlimit(which, (soft, hard))
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
    try:
        os.close(config["status_fd"])  # exec would have closed it (non-inheritable)
        # The init's handlers are Python's; a fresh interpreter has these.
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        for signum in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGCHLD):
            _signal.signal(signum, _signal.SIG_DFL)
        for which, soft, hard in config["rlimits"]:
            resource.setrlimit(which, (soft, hard))
        os.chdir(config["workdir"])
        _drop_privileges(config["uid"])
    except BaseException as exc:
        os.write(2, f"sandbox: cannot start the forked command: {exc}\n".encode())
        os._exit(127)
    try:
        run(config)
    finally:
        os._exit(127)


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


_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000


def enter_forked(config: dict, received: list[int], run: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    """In a process the zygote just forked for one job: become that job's
    monitor. Never returns.

    ``received`` are the descriptors the grader sent with the request, in
    the order of :func:`start_forked`: the status socket, then pass_fds,
    then the write ends of the command's stdout and stderr. Every other
    descriptor of the zygote is closed; pass_fds land at the numbers the
    grader gave (``config["pass_fds"]``), stdout and stderr at 1 and 2,
    /dev/null at 0. The monitor then sends its own pidfd on the status
    socket, enters new mount, PID, network, IPC and UTS namespaces (what
    ``unshare`` does for an exec'd command) and goes on as
    :func:`_namespace_monitor`."""
    try:
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # the zygote ignores it
        status, *passed = received[: 1 + len(config["pass_fds"])]
        out, err = received[1 + len(config["pass_fds"]) :]
        null = os.open("/dev/null", os.O_RDONLY)
        targets = {status: config["status_fd"], null: 0, out: 1, err: 2}
        targets.update(zip(passed, config["pass_fds"]))
        _arrange_fds(targets)
        os.set_inheritable(config["status_fd"], False)
        pidfd = os.pidfd_open(os.getpid())
        _send_with_fds(config["status_fd"], f"forked {os.getpid()}\n".encode(), [pidfd])
        os.close(pidfd)
        if config.get("mode") == "basic":
            _libc_call("prctl", _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        else:
            flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS
            _libc_call("unshare", flags)
    except BaseException as exc:
        try:
            os.write(config["status_fd"], f"error cannot enter the sandbox: {exc}\n".encode())
        finally:
            os._exit(125)
    try:
        if config.get("mode") == "basic":
            _basic_monitor(config, run)
        _namespace_monitor(config, run)
    finally:
        os._exit(125)


def _basic_monitor(config: dict, run: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    """Basic mode's monitor, a child subreaper: fork the command in a session
    of its own, with the limits and the Landlock rules, report its pid and
    how it ended on the status socket, then kill and reap every process it
    left (they all come to the monitor) and exit."""
    status = config["status_fd"]
    command = os.fork()
    if command == 0:
        try:
            os.close(status)
            os.setsid()
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            for which, soft, hard in config["rlimits"]:
                try:
                    resource.setrlimit(which, (soft, hard))
                except (ValueError, OSError):
                    pass  # as _start_basic: best effort where the system refuses one
            os.chdir(config["workdir"])
            if config["landlock_abi"]:
                _landlock_restrict_self(config["landlock_abi"], [tuple(rule) for rule in config["landlock_rules"]])
        except BaseException as exc:
            os.write(2, f"sandbox: cannot start the forked command: {exc}\n".encode())
            os._exit(127)
        try:
            run(config)
        finally:
            os._exit(127)
    for fd in config["pass_fds"]:  # only the command holds them now
        os.close(fd)
    os.write(status, f"ready {command}\n".encode())
    while True:
        pid, wait_status = os.wait()
        if pid == command:
            if os.WIFSIGNALED(wait_status):
                os.write(status, f"signal {os.WTERMSIG(wait_status)}\n".encode())
            else:
                os.write(status, f"exit {os.waitstatus_to_exitcode(wait_status)}\n".encode())
            break
    _kill_children_until_none()
    os._exit(0)


def _kill_children_until_none() -> None:
    """Kill this process's children, and those re-parented to it as their
    parents die (it is a subreaper), until it has none left."""
    me = os.getpid()
    while True:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as file:
                    data = file.read()
                if int(data[data.rindex(b")") + 2 :].split()[1]) == me:
                    os.kill(int(name), _signal.SIGKILL)
            except (OSError, ValueError):
                continue
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _send_with_fds(fd: int, data: bytes, fds: list[int]) -> None:
    sock = _socket.socket(fileno=fd)
    try:
        sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])
    finally:
        sock.detach()


def _arrange_fds(targets: dict[int, int]) -> None:
    """Make each descriptor ``source`` of ``targets`` appear at its target
    number, inheritable, and close every other descriptor of 3 or above."""
    floor = max([*targets, *targets.values()]) + 1
    moved = {fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, floor): target for source, target in targets.items()}
    keep = set(moved)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory listing's own descriptor
    for temporary, target in moved.items():
        os.dup2(temporary, target, inheritable=True)
        os.close(temporary)


def _build_root(config: dict) -> None:  # type: ignore[type-arg]
    root = config["root"]
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, _ROOT_TMPFS)
    # Fresh mounts first, then host trees: a virtualenv or a work directory
    # may well live below /tmp.
    os.makedirs(f"{root}/tmp", mode=0o755)
    _mount("tmpfs", f"{root}/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, _TMP_TMPFS)
    _build_dev(f"{root}/dev")
    os.makedirs(f"{root}/proc", mode=0o555)
    _mount_proc(f"{root}/proc")
    for tree in config["binds"]:
        os.makedirs(root + tree, mode=0o755, exist_ok=True)
        _bind(tree, root + tree, read_only=True)
    for target, link in config["links"]:
        os.symlink(target, root + link)
    _hide(root, config["binds"], config["hidden"])
    _build_etc(f"{root}/etc", config["uid"])
    # The work directory: a capped tmpfs holding a copy of the host's.
    uid, workdir = config["uid"], root + config["workdir"]
    os.makedirs(workdir, mode=0o755, exist_ok=True)
    options = f"{config['workdir_tmpfs']},uid={uid},gid={uid}"
    _mount("tmpfs", workdir, "tmpfs", _MS_NOSUID | _MS_NODEV, options)
    _copy_tree(config["workdir"], workdir, uid)
    _bring_loopback_up()
    _socket.sethostname("sandbox")
    _mount(None, root, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, _ROOT_TMPFS)


def _hide(root: str, binds: list[str], hidden: list[str]) -> None:
    """Cover each hidden path (resolved, on the host) wherever a bound tree
    shows it: an empty root-owned mode-000 tmpfs over a directory, an empty
    mode-000 file over anything else; a bound tree inside a hidden
    directory is covered whole. The empty file stays at ``/.empty``: unlinked,
    it would keep the root's tmpfs from being remounted read-only."""
    if not hidden:
        return
    empty_file = f"{root}/.empty"
    _write(empty_file, "")
    os.chmod(empty_file, 0)
    for tree in binds:
        real = os.path.realpath(tree)
        for path in hidden:
            if _is_within(real, path):
                target = root + tree
            elif _is_within(path, real):
                target = root + tree + path[len(real):]
            else:
                continue
            try:
                is_dir = stat.S_ISDIR(os.lstat(target).st_mode)
            except FileNotFoundError:
                continue  # already covered
            if is_dir:
                flags = _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
                _mount("tmpfs", target, "tmpfs", flags, "size=4k,nr_inodes=2,mode=000")
            else:
                _bind(empty_file, target, read_only=True)


def _copy_tree(source: str, target: str, uid: int) -> None:
    """Copy the grader's work directory ``source`` into ``target``:
    directories, regular files (mode and times kept) and symlinks (as
    links, never followed), all owned by ``uid``; other kinds are skipped.
    Iterative: no recursion on the Python stack."""
    pending = [(source, target)]
    while pending:
        src_dir, dst_dir = pending.pop()
        with os.scandir(src_dir) as entries:
            for entry in entries:
                src, dst = entry.path, os.path.join(dst_dir, entry.name)
                info = entry.stat(follow_symlinks=False)
                mode = stat.S_IMODE(info.st_mode) & 0o777
                if stat.S_ISDIR(info.st_mode):
                    os.mkdir(dst, 0o700)
                    os.chown(dst, uid, uid)
                    os.chmod(dst, mode | 0o700)
                    pending.append((src, dst))
                elif stat.S_ISREG(info.st_mode):
                    _copy_file(src, dst, mode, uid, info)
                elif stat.S_ISLNK(info.st_mode):
                    os.symlink(os.readlink(src), dst)
                    os.lchown(dst, uid, uid)


def _copy_file(source: str, target: str, mode: int, uid: int, info: os.stat_result) -> None:
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            offset, size = 0, os.fstat(src).st_size
            while offset < size:
                sent = os.sendfile(dst, src, offset, size - offset)
                if sent == 0:
                    break
                offset += sent
            os.fchown(dst, uid, uid)
            os.fchmod(dst, mode)
            os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _build_dev(dev: str) -> None:
    os.makedirs(dev, mode=0o755)
    _mount("tmpfs", dev, "tmpfs", _MS_NOSUID | _MS_NOEXEC, _DEV_TMPFS)
    for name in _DEVICES:
        _write(f"{dev}/{name}", "")
        _bind(f"/dev/{name}", f"{dev}/{name}", read_only=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):  # fmt: skip
        os.symlink(target, f"{dev}/{name}")
    os.makedirs(f"{dev}/shm", mode=0o755)
    _mount("tmpfs", f"{dev}/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, _SHM_TMPFS)


def _build_etc(etc: str, uid: int) -> None:
    os.makedirs(etc, mode=0o755)
    for name in _ETC_FILES:
        source = os.path.join("/etc", name)
        target = os.path.join(etc, name)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        elif os.path.isfile(source):
            info = os.stat(source)
            _copy_file(source, target, stat.S_IMODE(info.st_mode) & 0o777, 0, info)
    shell = "/usr/sbin/nologin"
    _write(f"{etc}/passwd", f"root:x:0:0::/root:{shell}\nsandbox:x:{uid}:{uid}::/tmp:{shell}\n")
    _write(f"{etc}/group", f"root:x:0:\nsandbox:x:{uid}:\n")
    _write(f"{etc}/hosts", "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    _write(f"{etc}/hostname", "sandbox\n")


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


_libc_for_mount: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _libc_for_mount
    if _libc_for_mount is None:
        libc = ctypes.CDLL(None, use_errno=True)
        text = ctypes.c_char_p
        libc.mount.argtypes = [text, text, text, ctypes.c_ulong, text]
        _libc_for_mount = libc
    return _libc_for_mount


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    if _libc().mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {fstype or source or ''} on {target}: {os.strerror(error)}")


def _bind(source: str, target: str, *, read_only: bool) -> None:
    _mount(source, target, None, _MS_BIND)
    # Per-mount flags of a bind mount only change on a remount.
    flags = _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV
    if source.startswith("/dev/"):
        flags &= ~_MS_NODEV
    _mount(None, target, None, flags | (_MS_RDONLY if read_only else 0))


def _mount_proc(target: str) -> None:
    # Hide the root-owned init process (its command line holds the config).
    for options in ("hidepid=invisible", "hidepid=2", None):
        try:
            _mount("proc", target, "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, options)
            return
        except OSError:
            if options is None:
                raise


def _bring_loopback_up() -> None:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))
    finally:
        sock.close()


if __name__ == "__main__" and sys.argv[1:2] == ["--namespace-init"]:
    _namespace_monitor(marshal.loads(bytes.fromhex(sys.argv[2])))


# The grader's side: everything below.
import errno  # noqa: E402
import grp  # noqa: E402
import pwd  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
from socket import recv_fds as _socket_recv_fds  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

__all__ = [
    "Limits",
    "RunResult",
    "SandboxError",
    "SandboxedProcess",
    "TOKEN_VARIABLE",
    "ForkUnavailable",
    "detect_isolation",
    "enter_forked",
    "remove_tree",
    "start",
    "start_forked",
]

#: Name of the environment variable that marks every process of a ``basic`` run.
TOKEN_VARIABLE = "GRADER_SANDBOX_TOKEN"

_ISOLATION_LEVELS = ("auto", "full", "basic")
_CPU_HARD_MARGIN_SECONDS = 5
_READ_CHUNK = 1 << 20
_PIPE_SIZE = 1 << 20
_SETUP_TIMEOUT_SECONDS = 30.0
_CLEANUP_TIMEOUT_SECONDS = 10.0
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_FULL_CONFINEMENT = "namespaces (network, pid, mount, ipc, uts), minimal chroot, unprivileged uid"

# Unprivileged uids/gids handed to full sandboxes, one per live sandbox.
_UID_FIRST = 61000
_UID_COUNT = 1000

# Linux constants not exposed by the standard library.
_PR_SET_CHILD_SUBREAPER = 36


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
    processes: int = 256
    """RLIMIT_NPROC: processes and threads of the sandbox's uid (TensorFlow
    runs about 7 threads on 2 cores, more with more cores). In basic mode
    the uid is the grader's own, and root ignores this limit."""
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


class SandboxError(Exception):
    """The sandbox itself cannot start or clean up: a grader fault, never a
    student's zero."""


# --------------------------------------------------------------------------
# Isolation level detection
# --------------------------------------------------------------------------

_probe_lock = threading.Lock()
_probe_result: tuple[str, str] | None = None


def detect_isolation(requested: str = "auto") -> tuple[str, str]:
    """Return ``(level, reason)`` for the isolation that :func:`start` will use.

    ``"auto"`` gives ``"full"`` when the grader is root and namespaces, chroot
    and setpriv work (checked once by starting a tiny sandbox; the answer is
    cached), else ``"basic"``. ``"full"`` raises :class:`SandboxError` when
    full isolation is unavailable; ``"basic"`` is always granted. For
    ``"basic"`` the reason ends with the confinement its commands get, e.g.
    ``"...; confinement: landlock abi 7: filesystem, tcp network, signals,
    abstract unix sockets"`` or ``"...; confinement: none: kernel without
    Landlock (Linux 5.13 or later)"`` (see :attr:`SandboxedProcess.confinement`).
    """
    if requested not in _ISOLATION_LEVELS:
        raise ValueError(f"isolation must be one of {', '.join(_ISOLATION_LEVELS)}; got {requested!r}")
    if requested == "basic":
        return "basic", f"basic isolation was requested; confinement: {_landlock().confinement}"
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = _probe_full_isolation()
    level, reason = _probe_result
    if requested == "full" and level != "full":
        raise SandboxError(f"full isolation is unavailable: {reason}")
    if level == "basic":
        reason = f"{reason}; confinement: {_landlock().confinement}"
    return level, reason


def _probe_full_isolation() -> tuple[str, str]:
    if sys.platform != "linux":
        return "basic", f"full isolation needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "basic", "full isolation needs root"
    for tool in ("unshare", "setpriv"):
        if _find_tool(tool) is None:
            return "basic", f"{tool} (util-linux) is not installed"
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as tmp:
        workdir = Path(tmp).resolve()
        # The command writes in its work directory, a tmpfs: the host's stays empty.
        check = "import os; assert os.getuid() != 0; open('probe', 'w').write('x'); print(os.getcwd())"
        try:
            proc = _start_full([sys.executable, "-I", "-S", "-c", check], workdir, Limits(), {})
        except SandboxError as exc:
            return "basic", f"the full isolation self-test could not start: {exc}"
        if proc.wait(_SETUP_TIMEOUT_SECONDS) is None:
            proc.kill()
        result = proc.result()
        if result.returncode != 0 or result.stdout != f"{workdir}\n" or os.listdir(workdir):
            detail = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
            return "basic", f"the full isolation self-test failed: {detail[0]}"
    return "full", "root, with namespaces, chroot and setpriv working"


def _find_tool(name: str) -> str | None:
    found = shutil.which(name, path=_SYSTEM_PATH)
    # The tools run inside the new root too, where only /usr, /bin and /sbin exist.
    if found and found.startswith(("/usr/", "/bin/", "/sbin/")):
        return found
    return None


# --------------------------------------------------------------------------
# The running sandbox
# --------------------------------------------------------------------------

# Pids of the children this module started and has not reaped yet. The basic
# mode's cleanup kills the grader's other children, never these.
_tracked_lock = threading.Lock()
_tracked_pids: set[int] = set()


class SandboxedProcess:
    """A running sandboxed command. Create it with :func:`start`.

    ``pid`` is the grader's direct child: the command itself in ``basic``
    mode, the monitor (``unshare`` exec'd into this file) in ``full`` mode.
    Use it as a context manager to have the whole tree killed on exit.

    ``isolation`` is ``"full"`` or ``"basic"``; ``confinement`` says what
    confines the command beyond the resource limits, for reports: in basic
    mode ``"landlock abi N: filesystem, tcp network, signals, abstract unix
    sockets"`` (what that kernel's ABI covers) or ``"none: WHY"``, followed
    by ``" (so the hidden paths stay readable)"`` when :func:`start` was
    given ``hidden`` paths that basic mode without Landlock cannot hide.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        isolation: str,
        limits: Limits,
        started: float,
        *,
        confinement: str,
        token: str | None = None,
        status_fd: int | None = None,
        init_pid: int | None = None,
        uid_lease: _UidLease | None = None,
        group: int | None = None,
    ) -> None:
        self.pid = popen.pid
        self.isolation = isolation
        self.confinement = confinement
        self._popen = popen
        self._started = started
        self._token = token
        self._group = group  # a forked basic command's process group (the monitor's is not it)
        self._reports_status = status_fd is not None
        self._status_fd = status_fd
        self._init_pidfd = _open_pidfd(init_pid, popen.pid) if init_pid else None
        self._init_pid = init_pid
        self._uid_lease = uid_lease
        self._stdout = _CappedReader(popen.stdout, limits.output_bytes, "stdout")
        self._stderr = _CappedReader(popen.stderr, limits.output_bytes, "stderr")
        self._lock = threading.Lock()
        self._killed_by_us = False
        self._ended: float | None = None
        self._status_text = ""
        self._done = threading.Event()
        threading.Thread(target=self._watch, name=f"sandbox-wait-{self.pid}", daemon=True).start()

    def __enter__(self) -> SandboxedProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def poll(self) -> int | None:
        """The return code once the command has ended (see RunResult), else None."""
        return self._returncode() if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the command to end; None when ``timeout`` seconds pass first."""
        if not self._done.wait(timeout):
            return None
        return self._returncode()

    def kill(self) -> None:
        """Kill the whole process tree and reap it. Idempotent; returns once
        no process of the run is left."""
        with self._lock:
            if not self._done.is_set() and self._ended is None:
                self._killed_by_us = True
        if self.isolation == "full":
            self._kill_full()
        else:
            self._kill_basic()
        if not self._done.wait(_CLEANUP_TIMEOUT_SECONDS):
            raise SandboxError(f"sandbox {self.pid} survived SIGKILL for {_CLEANUP_TIMEOUT_SECONDS:g} s")
        if self.isolation == "basic":
            _kill_strays(self._token)

    def result(self) -> RunResult:
        """The outcome; only after the command has ended (wait() or kill())."""
        if not self._done.is_set():
            raise RuntimeError("the sandboxed command is still running: call wait() or kill() first")
        returncode = self._returncode()
        assert self._ended is not None
        return RunResult(
            returncode=returncode,
            signal=-returncode if returncode < 0 else None,
            stdout=self._stdout.text(),
            stderr=self._stderr.text(),
            stdout_truncated=self._stdout.truncated,
            stderr_truncated=self._stderr.truncated,
            wall_seconds=self._ended - self._started,
            killed_by_us=self._killed_by_us,
        )

    # -- internals ---------------------------------------------------------

    def _kill_full(self) -> None:
        # SIGKILL to the namespace's init kills every process in it; unshare
        # then exits once they are all gone. Killing unshare instead would
        # return before the namespace is empty.
        with self._lock:  # _watch closes the pidfd under this lock
            if self._done.is_set():
                return
            if self._init_pidfd is not None:
                try:
                    signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
                    return
                except ProcessLookupError:
                    return
                except OSError:
                    pass
            stat = _read_stat(self._init_pid) if self._init_pid else None
            if stat is not None and stat[0] == self.pid:  # without pidfds: still the monitor's child
                os.kill(self._init_pid, signal.SIGKILL)
            else:
                self._send_to_child(signal.SIGKILL)  # the monitor's death sends init SIGKILL

    def _kill_basic(self) -> None:
        if self._done.is_set():
            return
        if self._group is not None:  # the command first: its monitor would reap it
            try:
                os.killpg(self._group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._send_to_child(signal.SIGKILL)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _send_to_child(self, signum: int) -> None:
        try:
            self._popen.send_signal(signum)  # a no-op once reaped
        except ProcessLookupError:
            pass

    def _watch(self) -> None:
        self._popen.wait()
        with self._lock:
            self._ended = time.monotonic()
        with _tracked_lock:
            _tracked_pids.discard(self.pid)
        try:
            if self.isolation == "basic":
                if self._reports_status:
                    self._status_text = _read_available(self._status_fd)
                    self._close_full_handles()
                _kill_strays(self._token)
            else:
                self._status_text = _read_available(self._status_fd)
                self._close_full_handles()
        finally:
            self._done.set()

    def _close_full_handles(self) -> None:
        with self._lock:
            for fd in (self._status_fd, self._init_pidfd):
                if fd is not None:
                    os.close(fd)
            self._status_fd = self._init_pidfd = None
        # unshare exits only after the init process, and the kernel empties a
        # PID namespace before its init is reaped, so nothing should run as
        # the sandbox's uid any more; make sure before handing the uid out again.
        if self._uid_lease is not None:
            _kill_uid(self._uid_lease.uid)
            self._uid_lease.release()
            self._uid_lease = None

    def _returncode(self) -> int:
        returncode = self._popen.returncode
        assert returncode is not None
        if self.isolation == "full" or self._reports_status:
            # The init process reports how the command ended: unshare's own
            # status only tells how the init process ended.
            for line in self._status_text.splitlines():
                kind, _, value = line.partition(" ")
                if kind == "exit":
                    return int(value)
                if kind == "signal":
                    return -int(value)
            if self._killed_by_us:
                return -signal.SIGKILL
        return returncode


class _CappedReader:
    """Drains a pipe on a thread, keeping only its first ``cap`` bytes."""

    def __init__(self, stream, cap: int, name: str) -> None:  # type: ignore[no-untyped-def]
        self._stream = stream
        self._cap = cap
        self._data = bytearray()
        self.truncated = False
        try:
            fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except (AttributeError, OSError):
            pass  # a bigger pipe only saves system calls
        self._thread = threading.Thread(target=self._drain, name=f"sandbox-{name}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        fd = self._stream.fileno()
        try:
            while chunk := os.read(fd, _READ_CHUNK):
                room = self._cap - len(self._data)
                if room > 0:
                    self._data += chunk[:room]
                if len(chunk) > room:
                    self.truncated = True
        finally:
            self._stream.close()

    def text(self) -> str:
        self._thread.join(_CLEANUP_TIMEOUT_SECONDS)
        return bytes(self._data).decode("utf-8", errors="replace")


def _read_available(fd: int | None) -> str:
    if fd is None:
        return ""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _open_pidfd(pid: int, parent: int) -> int | None:
    """A pidfd for ``pid``, only if it is still ``parent``'s child (so that a
    recycled pid is never signalled)."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    stat = _read_stat(pid)
    if stat is None or stat[0] != parent:
        os.close(pidfd)
        return None
    return pidfd


# --------------------------------------------------------------------------
# start()
# --------------------------------------------------------------------------


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
    if not _program_exists(argv, env):
        raise SandboxError(f"{argv[0]} is not an executable program")
    hidden_paths = _existing_real_paths(hidden)
    level, _ = detect_isolation(isolation)
    if level == "full":
        return _start_full(list(argv), workdir, limits, dict(env), pass_fds=fds, hidden=hidden_paths)
    return _start_basic(list(argv), workdir, limits, dict(env), pass_fds=fds, hidden=hidden_paths)


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


def _program_exists(argv: list[str], env: dict[str, str]) -> bool:
    return _find_program(argv[0], env) is not None


def _find_program(name: str, env: dict[str, str]) -> str | None:
    """The executable file that ``name`` runs, as execvp finds it with ``env``."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name, path=env.get("PATH", os.defpath))


# -- basic ----------------------------------------------------------------

_subreaper_lock = threading.Lock()
_subreaper_set = False


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
    confinement = landlock.confinement
    if hidden and not landlock.abi:
        confinement += " (so the hidden paths stay readable)"
    _become_subreaper()
    token = os.urandom(16).hex()
    env[TOKEN_VARIABLE] = token
    # RLIMIT_NPROC counts every process and thread of the uid, so the budget
    # sits on top of what the uid already runs.
    wanted = _rlimits(limits, _count_tasks_of_uid(os.getuid()) + limits.processes)
    rlimits = {name: _within_hard_limit(_RLIMITS[name], value) for name, value in wanted.items()}
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
        launcher = [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__), "--landlock-exec"]
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
        with _tracked_lock:
            popen = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=preexec,
                pass_fds=tuple(pass_fds) + (() if status_w is None else (status_w,)),
            )
            _tracked_pids.add(popen.pid)
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
            with _tracked_lock:
                _tracked_pids.discard(popen.pid)
            raise SandboxError(f"the Landlock launcher could not start {argv[0]}: {failure}")
    return SandboxedProcess(popen, "basic", limits, started, confinement=confinement, token=token)


# -- removing what a basic-mode command left -------------------------------

_DIR_OPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What renaming a directory onto a name already taken can fail with.
_NAME_TAKEN = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR)


def remove_tree(path: str | Path) -> None:
    """Remove ``path`` and everything below it, written by a hostile command.

    Never follows a symlink (a link is removed, its target survives: ``path``
    itself included), never opens anything but directories (fifos, sockets
    and devices are unlinked unopened), restores the permissions it needs
    on directories the command locked (mode 000 included), and does not
    recurse, neither on the Python stack nor through long paths: it works
    from directory descriptors, moving each subdirectory up to the top
    level before removing its parent, so a chain of any depth, and paths
    far beyond PATH_MAX, come apart level by level. A missing ``path`` is
    not an error. Call it once the run is over (after
    :meth:`SandboxedProcess.wait` or :meth:`SandboxedProcess.kill`):
    nothing may write there meanwhile.
    Raises :class:`SandboxError` with a one-line reason when something
    cannot be removed (a mount point, a file the grader's user may not
    delete)."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    if not name:
        raise SandboxError(f"refusing to remove {path}")
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SandboxError(f"cannot remove {path}: {exc.strerror}") from None
    try:
        try:
            info = os.lstat(name, dir_fd=parent_fd)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return
        top = _open_own_dir(parent_fd, name)
        try:
            _empty_directory(top)
        finally:
            os.close(top)
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError as exc:
        if exc.filename in (None, name):  # removed meanwhile: the goal
            return
        raise SandboxError(f"cannot remove {path}: {exc.strerror} ({exc.filename})") from None
    except OSError as exc:
        where = f" ({exc.filename})" if isinstance(exc.filename, str) and exc.filename != name else ""
        raise SandboxError(f"cannot remove {path}: {exc.strerror}{where}") from None
    finally:
        os.close(parent_fd)


def _empty_directory(top: int) -> None:
    """Empty the directory open as ``top``: pass after pass, unlink what is
    not a directory, and for each subdirectory move its own subdirectories
    up into ``top``, unlink its other entries and remove it. Stops with the
    first error of a pass in which nothing could be removed."""
    serial = 0
    while True:
        with os.scandir(top) as scan:
            entries = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
        if not entries:
            return
        progress, failure = False, None
        for name, is_dir in entries:
            try:
                if not is_dir:
                    os.unlink(name, dir_fd=top)
                    progress = True
                    continue
                sub = _open_own_dir(top, name)
                try:
                    with os.scandir(sub) as scan:
                        children = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
                    for child, child_is_dir in children:
                        if not child_is_dir:
                            os.unlink(child, dir_fd=sub)
                            progress = True
                            continue
                        _make_own(sub, child)  # moving a directory rewrites its ".."
                        while True:
                            serial += 1
                            try:
                                os.rename(child, f".removing-{serial}", src_dir_fd=sub, dst_dir_fd=top)
                                break
                            except OSError as exc:
                                if exc.errno not in _NAME_TAKEN:
                                    raise
                        progress = True
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=top)
                progress = True
            except FileNotFoundError:
                progress = True
            except OSError as exc:
                if exc.filename is None:
                    exc.filename = name
                failure = failure or exc
        if not progress and failure is not None:
            raise failure


def _open_own_dir(dir_fd: int, name: str) -> int:
    """Open the directory ``name`` (never a symlink) with read, write and
    search permission for its owner restored."""
    try:
        fd = os.open(name, _DIR_OPEN_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        _make_own(dir_fd, name)
        fd = os.open(name, _DIR_OPEN_FLAGS, dir_fd=dir_fd)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & 0o700 != 0o700:
        os.fchmod(fd, mode | 0o700)
    return fd


def _make_own(dir_fd: int, name: str) -> None:
    """Give the directory ``name`` (not a symlink: O_NOFOLLOW) owner read,
    write and search permission, even when it cannot be opened for reading."""
    handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        mode = stat.S_IMODE(os.fstat(handle).st_mode)
        if mode & 0o700 == 0o700:
            return
        try:
            os.chmod(f"/proc/self/fd/{handle}", mode | 0o700)  # the very inode just opened
        except FileNotFoundError:  # no /proc: it was a directory a moment ago
            os.chmod(name, mode | 0o700, dir_fd=dir_fd)
    finally:
        os.close(handle)


# -- Landlock, the grader's side ------------------------------------------


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
    with tempfile.TemporaryDirectory(prefix="sandbox-landlock-probe-") as tmp:
        workdir = Path(tmp).resolve()
        try:
            proc = _start_basic([sys.executable, "-I", "-S", "-c", check], workdir, Limits(), {}, candidate)
        except SandboxError as exc:
            return _Landlock(0, f"none: the Landlock self-test could not start: {exc}")
        if proc.wait(_SETUP_TIMEOUT_SECONDS) is None:
            proc.kill()
        result = proc.result()
        probe = workdir / "probe"
        if result.returncode != 0 or not probe.is_file() or probe.read_text() != "confined":
            detail = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
            return _Landlock(0, f"none: the Landlock self-test failed: {detail[0]}")
    return candidate


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


def _become_subreaper() -> None:
    """Make orphaned descendants re-parent to this process (once)."""
    global _subreaper_set
    with _subreaper_lock:
        if _subreaper_set or sys.platform != "linux":
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise SandboxError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
        _subreaper_set = True


def _kill_strays(token: str | None) -> None:
    """Kill and reap what a basic run left: orphans re-parented to us that
    are in another session than ours and not tracked, and any process whose
    environment carries ``token``. Repeats until a pass finds nothing."""
    if not os.path.isdir("/proc/self"):
        return
    me, my_session = os.getpid(), os.getsid(0)
    needle = f"{TOKEN_VARIABLE}={token}".encode() if token else None
    deadline = time.monotonic() + _CLEANUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with _tracked_lock:
            orphans, marked = [], []
            for pid in _pids():
                stat = _read_stat(pid)
                if stat is None:
                    continue
                ppid, session = stat
                if ppid == me and session != my_session and pid not in _tracked_pids:
                    orphans.append(pid)
                elif needle is not None and _environ_contains(pid, needle):
                    marked.append(pid)
            for pid in orphans + marked:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not orphans and not marked:
            return
        for pid in orphans:
            _reap(pid, deadline)
        if marked:
            time.sleep(0.01)  # their own parents (ours, re-parented) reap them
    raise SandboxError("could not kill every process of a basic sandbox run")


def _reap(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.002)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _read_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[3])


def _environ_contains(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return needle in file.read().split(b"\0")
    except OSError:
        return False


def _count_tasks_of_uid(uid: int) -> int:
    """Processes and threads whose real uid is ``uid`` (what RLIMIT_NPROC counts)."""
    if not os.path.isdir("/proc/self"):
        return 0
    total = 0
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/status") as file:
                status = dict(line.split(":", 1) for line in file if ":" in line)
            if int(status["Uid"].split()[0]) == uid:
                total += int(status["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return total


# -- full -----------------------------------------------------------------


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


class _UidLease:
    """An unprivileged uid/gid reserved for one sandbox with an flock, so that
    concurrent sandboxes (even from other grader processes) never share one
    and RLIMIT_NPROC of one never counts another's processes."""

    _counter = 0
    _counter_lock = threading.Lock()

    def __init__(self, lock_dir: Path) -> None:
        with _UidLease._counter_lock:
            _UidLease._counter += 1
            offset = os.getpid() + _UidLease._counter
        busy = _uids_of_live_processes()
        for step in range(_UID_COUNT):
            uid = _UID_FIRST + (offset + step) % _UID_COUNT
            if uid in busy or _uid_or_gid_is_named(uid):
                continue
            fd = os.open(lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid = uid
            self._fd: int | None = fd
            return
        raise SandboxError(f"no free sandbox uid in {_UID_FIRST}-{_UID_FIRST + _UID_COUNT - 1}")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` until none is left."""
    deadline = time.monotonic() + _CLEANUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        found = False
        for pid in _pids():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    found = True
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
        if not found:
            return
        time.sleep(0.01)
    raise SandboxError(f"processes of sandbox uid {uid} survived SIGKILL")


def _uid_or_gid_is_named(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        pass
    try:
        grp.getgrgid(uid)
        return True
    except KeyError:
        return False


def _uids_of_live_processes() -> set[int]:
    uids = set()
    for pid in _pids():
        try:
            uids.add(os.stat(f"/proc/{pid}").st_uid)
        except OSError:
            continue
    return uids


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
    # No --fork: unshare execs this file (the monitor) in the new namespaces,
    # and the monitor forks the namespace's init itself, so that it can
    # close its copies of pass_fds.
    command = [
        unshare, "--net", "--pid", "--mount", "--ipc", "--uts",
        "--", sys.executable, "-I", "-S", "-B", os.path.abspath(__file__),
        "--namespace-init", marshal.dumps(config).hex(),
    ]  # fmt: skip
    started = time.monotonic()
    try:
        with _tracked_lock:
            popen = subprocess.Popen(
                command,
                cwd="/",
                env={"PATH": _SYSTEM_PATH},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_w, *pass_fds),
            )
            _tracked_pids.add(popen.pid)
    except OSError as exc:
        lease.release()
        os.close(status_r)
        raise SandboxError(f"cannot run {unshare}: {exc}") from exc
    finally:
        os.close(status_w)
    kind, _, value = _first_status_line(status_r).partition(" ")
    if kind != "ready":
        _abandon(popen, status_r, lease, value if kind == "error" else "")
    os.set_blocking(status_r, False)
    return SandboxedProcess(
        popen, "full", limits, started, confinement=_FULL_CONFINEMENT, status_fd=status_r,
        init_pid=int(value), uid_lease=lease,
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
    config = {
        "root": str(state / "root"),
        "binds": binds,
        "links": links,
        "hidden": list(hidden),
        "workdir": str(workdir),
        "workdir_tmpfs": f"size={limits.workdir_mib}m,nr_inodes={limits.workdir_files},mode=700",
        "pass_fds": list(pass_fds),
        "uid": lease.uid,
        "rlimits": [(_RLIMITS[name], *value) for name, value in _rlimits(limits, limits.processes).items()],
        "env": env,
    }
    return config, lease


class ForkUnavailable(SandboxError):
    """The zygote could not fork this command (it is gone, or refused):
    nothing of the command ran; start it fresh instead."""


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
    fds = tuple(pass_fds)
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise SandboxError(f"work directory {workdir} does not exist")
    hidden_paths = _existing_real_paths(hidden)
    lease: _UidLease | None = None
    if isolation == "full":
        config, lease = _full_config(workdir, limits, dict(env), fds, hidden_paths)
        confinement = _FULL_CONFINEMENT
    else:
        config, confinement = _basic_config(workdir, limits, dict(env), fds, hidden_paths)
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
        if isinstance(exc, (OSError, ForkUnavailable)):
            raise ForkUnavailable(f"the zygote did not fork: {exc}") from None
        raise
    status_r = ours[0]
    monitor = _ForkedMonitor(pid, pidfd, os.fdopen(out_r, "rb", buffering=0), os.fdopen(err_r, "rb", buffering=0))
    with _tracked_lock:
        _tracked_pids.add(pid)
    kind, _, value = _first_status_line(status_r).partition(" ")
    if kind != "ready":
        _abandon(monitor, status_r, lease, value if kind == "error" else "")  # type: ignore[arg-type]
    os.set_blocking(status_r, False)
    if isolation == "full":
        return SandboxedProcess(
            monitor, "full", limits, started, confinement=confinement, status_fd=status_r,  # type: ignore[arg-type]
            init_pid=int(value), uid_lease=lease,
        )
    return SandboxedProcess(
        monitor, "basic", limits, started, confinement=confinement, status_fd=status_r,  # type: ignore[arg-type]
        token=config["env"][TOKEN_VARIABLE], group=int(value),
    )


def _basic_config(
    workdir: Path, limits: Limits, env: dict[str, str], pass_fds: tuple[int, ...], hidden: list[str]
) -> tuple[dict, str]:  # type: ignore[type-arg]
    """What a forked basic-mode command needs (as :func:`_start_basic` gives
    an exec'd one): its environment with the run's token, its rlimits and
    its Landlock rules; and the confinement it gets."""
    landlock = _landlock()
    confinement = landlock.confinement
    if hidden and not landlock.abi:
        confinement += " (so the hidden paths stay readable)"
    _become_subreaper()  # what the monitor leaves, should it be killed, comes to us
    env[TOKEN_VARIABLE] = os.urandom(16).hex()
    wanted = _rlimits(limits, _count_tasks_of_uid(os.getuid()) + limits.processes)
    config = {
        "mode": "basic",
        "workdir": str(workdir),
        "env": env,
        "pass_fds": list(pass_fds),
        "rlimits": [(_RLIMITS[name], *_within_hard_limit(_RLIMITS[name], value)) for name, value in wanted.items()],
        "landlock_abi": landlock.abi,
        "landlock_rules": _landlock_rules(workdir, None, hidden) if landlock.abi else [],
    }
    return config, confinement


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


class _ForkedMonitor:
    """What :class:`SandboxedProcess` uses of a Popen, for a monitor that the
    zygote forked (not the grader's child: it is watched and signalled
    through its pidfd)."""

    #: How the monitor ended is not ours to see; the init's status line says
    #: how the command ended, and its absence means the sandbox did not start.
    _EXIT_UNKNOWN = 125

    def __init__(self, pid: int, pidfd: int, stdout, stderr) -> None:  # type: ignore[no-untyped-def]
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:  # readable once it exited
                return None
            with self._lock:
                self.returncode = self._EXIT_UNKNOWN
                os.close(self._pidfd)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        with self._lock:
            if self.returncode is None:
                try:
                    signal.pidfd_send_signal(self._pidfd, signum)
                except ProcessLookupError:
                    pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        self.wait(timeout)
        return self.stdout.read(), self.stderr.read()


def _first_status_line(status_r: int) -> str:
    """What the init process reports once the sandbox is built ("ready PID")
    or failed ("error WHY"); "" if it dies or takes too long first."""
    deadline = time.monotonic() + _SETUP_TIMEOUT_SECONDS
    received = b""
    while b"\n" not in received:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([status_r], [], [], remaining)[0]:
            return ""
        chunk = os.read(status_r, 4096)
        if not chunk:
            return ""
        received += chunk
    return received.partition(b"\n")[0].decode(errors="replace")


def _abandon(
    popen: subprocess.Popen[bytes] | _ForkedMonitor, status_r: int, lease: _UidLease | None, reason: str
) -> None:
    """Kill a sandbox that did not start and raise SandboxError saying why."""
    try:
        popen.kill()
        _, stderr = popen.communicate(timeout=_CLEANUP_TIMEOUT_SECONDS)
    finally:
        with _tracked_lock:
            _tracked_pids.discard(popen.pid)
        os.close(status_r)
        if lease is not None:
            lease.release()
    reasons = [reason] if reason else []
    reasons += stderr.decode(errors="replace").strip().splitlines()[-1:]
    raise SandboxError("the full sandbox did not start: " + ("; ".join(reasons) or "no reason given"))
