"""The grader's side: :func:`remove_tree`, which safely removes what a
basic-mode command left in its work directory (symlinks out, fifos,
sockets, deep directory chains, permissions removed), and
:func:`remove_cgroup`, which empties and removes a sandbox's cgroup.

Run by the grader once a run is over; standard library only.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time
from pathlib import Path

from .core import _CLEANUP_TIMEOUT_SECONDS, SandboxError


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


def _write_control(path: str, value: str) -> None:
    """Write ``value`` to the cgroup interface file ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def remove_cgroup(box: object) -> None:
    """Kill every process left in a sandbox's cgroup (``box``, a
    :class:`cgroups.Box`) and remove its directories; missing ones are
    fine. cgroup v2's ``cgroup.kill`` kills the whole box at once; otherwise
    (v1, or a v2 kernel before 5.14) each task listed is killed until none
    is left. Raises :class:`SandboxError` when the box cannot be emptied or
    removed within the clean-up time."""
    deadline = time.monotonic() + _CLEANUP_TIMEOUT_SECONDS
    dirs = list(box.dirs.values())  # type: ignore[attr-defined]
    for directory in dirs:
        kill = os.path.join(directory, "cgroup.kill")
        if os.path.exists(kill):
            try:
                _write_control(kill, "1")
            except OSError:
                pass
    while True:
        left = [directory for directory in dirs if os.path.isdir(directory)]
        if not left:
            return
        for directory in left:
            try:
                with open(os.path.join(directory, "cgroup.procs")) as file:
                    pids = [int(pid) for pid in file.read().split()]
            except (OSError, ValueError):
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise SandboxError(f"cannot remove the sandbox's cgroup {directory}: {exc.strerror}") from None
        time.sleep(0.01)
