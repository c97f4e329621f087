"""The minimal root of a full sandbox, built by the namespace's init process.

Run in the child, as root inside the new mount, PID, network, IPC and UTS
namespaces, before the command starts: :func:`_build_root` (called by
``namespace.py``'s init, exec'd or forked from the zygote) mounts a tmpfs
root holding the read-only host trees, a synthetic ``/etc`` and ``/dev``,
fresh ``/tmp``, ``/dev/shm`` and ``/proc``, and a capped tmpfs work directory
with a copy of the grader's; it covers the hidden paths and brings the
loopback interface up. The init then chroots into it.

Standard library only (C modules and ctypes): imported before the chroot,
it loads nothing after it.
"""

from __future__ import annotations

import _socket
import ctypes
import fcntl
import os
import stat
import struct

from .common import _is_within

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
