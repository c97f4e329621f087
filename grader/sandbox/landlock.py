"""Landlock, the child's side: :func:`_landlock_restrict_self`.

Run in the child, before the command: basic mode's monitor (``monitor.py``)
forks the command, which confines itself with :func:`_landlock_restrict_self`
before it execs the command (or, forked from the zygote, runs it); the
command and all its descendants stay confined, root included. The grader's
side (``basic.py``) imports the constants below to write the rules and to
probe the kernel.

Standard library only, and quick to import: it runs before every
basic-mode command.
"""

from __future__ import annotations

import ctypes
import os
import stat

from .common import _PR_SET_NO_NEW_PRIVS, _libc_call

# landlock_create_ruleset, landlock_add_rule, landlock_restrict_self: these
# machines use the generic system call table (asm-generic/unistd.h) or, on
# x86_64, the same numbers.
_LANDLOCK_SYSCALLS = {machine: (444, 445, 446) for machine in ("x86_64", "aarch64", "riscv64")}
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
#: The newest Landlock ABI whose access rights this package knows; a newer
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
