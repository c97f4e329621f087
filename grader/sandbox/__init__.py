"""Run an untrusted command with isolation and resource limits.

The trusted grader uses this package to start the child Python process that
imports a student's submission. It depends on the standard library only and
never imports TensorFlow.

Two isolation levels exist:

``full`` (the grader runs as root on Linux)
    ``unshare`` puts the child in new network, PID, mount, IPC and UTS
    namespaces and execs ``__main__.py --namespace-init`` (``namespace.py``): a
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
    not the grader's temporary files. Where the kernel gives one
    (``cgroups.py``: v2, or v1's memory and pids hierarchies), the sandbox
    has a cgroup of its own, which the monitor joins before it forks the
    init: ``Limits.memory_mib`` for all its processes together (swap off;
    tmpfs pages count), ``Limits.processes`` tasks (``pids.max``). When the
    OOM killer acts in it, :attr:`RunResult.out_of_memory` says so; the
    cgroup is emptied and removed once the sandbox has ended. When the command exits, or when the
    grader calls :meth:`SandboxedProcess.kill`, the init process dies and the
    kernel kills every process left in the PID namespace; if the monitor is
    killed, the kernel kills the init process (parent-death signal); if the
    grader dies first (SIGKILL included), the monitor, which watches it
    through a pidfd, kills the init process.

``basic`` (not root, e.g. a student's laptop)
    A monitor (``__main__.py --basic-monitor``, ``monitor.py``), the
    grader's child, starts the command in a new session, as the grader's
    own user, with the same resource limits. The monitor is a child
    subreaper: when the command exits or is killed it kills every process
    the command left. It watches the grader through a pidfd, so that
    whatever ends the grader (SIGHUP when the terminal closes, SIGTERM,
    SIGINT, SIGKILL) ends the command and everything it left. The grader is
    a child subreaper too, and once a run has ended it kills what the
    monitor left, should it have been killed: orphans re-parented to the
    grader and every process carrying the run's random token in its
    environment. That cleanup also kills any other child of the grader
    that started its own session, so a grader using basic mode should not
    run such children of its own.

    RLIMIT_NPROC counts every task of the user as it is when one is
    created. From Linux 5.14 the kernel counts it per user namespace:
    where an unprivileged user may make one (probed once), the monitor
    enters a user namespace of its own (the uid maps to itself), so the
    sandbox may run ``Limits.processes`` tasks whatever its neighbours run.
    Elsewhere its budget sits on top of what the user ran when it started,
    and a neighbour that grabs tasks can use it up. Root ignores
    RLIMIT_NPROC. Where the grader may make a cgroup (as root, or under a
    cgroup v2 subtree delegated to its user), a basic sandbox gets one as
    in full mode. :attr:`SandboxedProcess.resources` says which applies.

    The command works in the host work directory itself, with no cap on
    its total size or number of files (only ``Limits.file_size_mib`` per
    file): what it leaves there is hostile (symlinks out, fifos, sockets,
    5,000-level directory chains, permissions removed) and
    :func:`remove_tree` removes it safely.

    Where the kernel has Landlock (Linux 5.13 or later, enabled at boot),
    the command's fork (``landlock.py``) sets ``no_new_privs`` and confines
    itself just before it execs the command;
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
    sandbox uses the kernel's ABI up to the newest one it knows
    (:data:`_LANDLOCK_ABI_KNOWN`) and only the rights of that ABI.

    Without Landlock (an older kernel, Landlock disabled, another OS, or a
    failed self-test) basic mode confines nothing: the command can read and
    write whatever the grader's user can, the reference solution, the rubric
    and the ``hidden`` paths included, use the network and signal the
    grader.
    :attr:`SandboxedProcess.confinement` and the reason from
    :func:`detect_isolation` say which case applies.

In both modes the ``pass_fds`` given to :func:`start` reach the command at
the same numbers through every layer (unshare, which execs; the monitors
and the init process, which close their copies as soon as they have forked;
setpriv, which execs), so
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
limits and Landlock rules, and kills whatever it leaves (``monitor.py``). The job's
descriptors travel over a UNIX socket (SCM_RIGHTS) and land at their
pass_fds numbers; the grader watches and signals the fork through its
pidfd. The :class:`SandboxedProcess` it gets works as for :func:`start`.

Wall-clock budgets are the caller's job: poll() and kill() (or wait() with a
timeout) give it what it needs.

The package holds several programs; each module's docstring says who runs it.
In the child, before the command, standard library only (never this
``__init__``, which is the grader's side):

- ``__main__.py``: the entry script the grader execs by path for the two
  programs below (``--basic-monitor``, ``--namespace-init``);
- ``monitor.py``: basic mode's monitor, exec'd or in the zygote's fork;
- ``landlock.py``: basic mode's Landlock rules, applied by the command's fork;
- ``namespace.py``: full mode's monitor and namespace init, which builds the
  root of ``rootfs.py``;
- ``forked.py``: :func:`enter_forked`, in a process the zygote forked;
- ``common.py``: what both sides share (the C library, paths, status lines).

In the grader: ``core.py`` (limits, results, errors), ``isolation.py``
(:func:`detect_isolation`), ``launch.py`` (:func:`start`,
:func:`start_forked`), ``basic.py`` and ``full.py`` (each mode's start),
``cgroups.py`` (a cgroup per sandbox), ``running.py``
(:class:`SandboxedProcess`), ``processes.py`` (the grader's children,
:func:`track`), ``uids.py`` (full mode's uids) and ``remove.py``
(:func:`remove_tree`, and a sandbox's cgroup).
"""

from __future__ import annotations

from . import cgroups
from .core import TOKEN_VARIABLE, ForkUnavailable, Limits, RunResult, SandboxError
from .forked import enter_forked
from .isolation import detect_isolation
from .launch import start, start_forked
from .processes import track, untrack
from .remove import remove_tree
from .running import SandboxedProcess

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
    "track",
    "untrack",
]

# Private names that tests read, as before the split (a test that patches one
# patches the module that uses it, e.g. ``sandbox.basic``).
from .basic import _carve_out, _Landlock, _landlock, _landlock_rules, _start_basic  # noqa: E402, F401
from .common import _is_within  # noqa: E402, F401
from .full import _read_only_trees  # noqa: E402, F401
from .landlock import _FS_EXECUTE, _FS_READ_DIR, _FS_READ_FILE  # noqa: E402, F401
from .processes import _tracked_lock, _tracked_pids  # noqa: E402, F401
