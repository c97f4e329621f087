"""The grader's side: which isolation level a sandbox gets, :func:`detect_isolation`.

Full isolation is probed once, by starting a tiny full sandbox; basic
mode's confinement (Landlock or none) is ``basic.py``'s own probe.

Imported by the grader only; standard library only.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from .basic import _landlock
from .core import Limits, RunResult, SandboxError, _find_tool
from .full import _start_full
from .running import SandboxedProcess, _self_test

_ISOLATION_LEVELS = ("auto", "full", "basic")

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
    # The command writes in its work directory, a tmpfs: the host's stays empty.
    check = "import os; assert os.getuid() != 0; open('probe', 'w').write('x'); print(os.getcwd())"

    def isolated(result: RunResult, workdir: Path) -> bool:
        return result.stdout == f"{workdir}\n" and not os.listdir(workdir)

    def start(argv: list[str], workdir: Path) -> SandboxedProcess:
        return _start_full(argv, workdir, Limits(), {})

    failure = _self_test(start, check, "sandbox-probe-", isolated)
    if failure:
        return "basic", f"the full isolation self-test {failure}"
    return "full", "root, with namespaces, chroot and setpriv working"
