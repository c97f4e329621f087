"""Basic isolation as an unprivileged user sees it; prints a JSON report.

tests/test_sandbox.py runs this inside a full sandbox (so as a non-root uid),
next to a copy of the grader/sandbox/ package, then checks the report.
"""

import json
import os
import sys
import textwrap
import time
from pathlib import Path

from grader import sandbox

FORK_BOMB = """
    import os, time
    children, outcome = 0, "no limit hit"
    try:
        for _ in range(500):
            if os.fork() == 0:
                time.sleep(120)
                os._exit(0)
            children += 1
    except OSError as exc:
        outcome = type(exc).__name__
    with open("forks.tmp", "w") as f:
        f.write(json.dumps({"children": children, "outcome": outcome}))
    os.rename("forks.tmp", "forks.json")
    time.sleep(120)
"""

REACH_OUT = """
    import os, sys
    report = {}
    attempts = {
        "read_driver": lambda: open(os.path.join(os.path.dirname(os.getcwd()), "driver.py")).read(),
        "signal_driver": lambda: os.kill(int(sys.argv[1]), 0),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            report[name] = "allowed"
        except OSError as exc:
            report[name] = type(exc).__name__
    print(json.dumps(report))
"""

DAEMON = """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            code = ("import os, time; open('daemon.tmp', 'w').write(str(os.getpid())); "
                    "os.rename('daemon.tmp', 'daemon.pid'); time.sleep(120)")
            os.execve(sys.executable, [sys.executable, "-c", code], {})
        os._exit(0)
    os.wait()
    while not os.path.exists("daemon.pid"):
        time.sleep(0.01)
"""


LITTER = """
    import os, socket, sys
    os.makedirs("locked/inner")
    open("locked/inner/file", "w").write("x")
    os.symlink(sys.argv[1], "locked/to_outside")
    os.chmod("locked/inner", 0)
    os.chmod("locked", 0)
    os.mkfifo("fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
    os.mkdir("d")
    for level in range(5000 - 1):  # a 5,000-level chain, built from the bottom up
        os.mkdir("up")
        os.rename("d", "up/d")
        os.rename("up", "d")
        if level % 1000 == 0:
            os.symlink(sys.argv[1], "d/to_outside")
    fd = os.open("d", os.O_RDONLY)
    for depth in range(5000):  # lock some levels on the way down
        try:
            below = os.open("d", os.O_RDONLY, dir_fd=fd)
        except FileNotFoundError:
            below = None
        if depth % 1000 == 0:
            os.fchmod(fd, 0o500 if depth % 2000 else 0)
        os.close(fd)
        if below is None:
            break
        fd = below
    os.chmod(".", 0o500)
"""


def launch(name: str, source: str, limits: sandbox.Limits,
           *args: str) -> tuple[sandbox.SandboxedProcess, Path]:
    workdir = Path(name).resolve()
    workdir.mkdir()
    (workdir / "main.py").write_text("import json\n" + textwrap.dedent(source))
    env = {"LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    return sandbox.start([sys.executable, "main.py", *args], workdir, limits, env, "auto"), workdir


def wait_for(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.read_text()


def other_processes() -> list[int]:
    """Every process this uid can see except this one (/proc hides the rest)."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]


def main() -> None:
    report = {"isolation": sandbox.detect_isolation("auto"), "uid": os.getuid()}

    proc, workdir = launch("bomb", FORK_BOMB, sandbox.Limits(processes=16))
    bomb = json.loads(wait_for(workdir / "forks.json"))
    proc.kill()
    bomb["left_after_kill"] = other_processes()
    report["fork_bomb"] = bomb

    proc, workdir = launch("daemon", DAEMON, sandbox.Limits())
    returncode = proc.wait(20)
    daemon_pid = int((workdir / "daemon.pid").read_text())
    alive = os.path.exists(f"/proc/{daemon_pid}")
    report["daemon"] = {"returncode": returncode, "alive_after_exit": alive}
    proc.kill()

    # Landlock, where the kernel has it: the driver's files and the driver
    # itself are out of reach (without it, both attempts are allowed).
    proc, _ = launch("reach", REACH_OUT, sandbox.Limits(), str(os.getpid()))
    proc.wait(20)
    report["reach_out"] = json.loads(proc.result().stdout)
    report["confinement"] = proc.confinement
    proc.kill()

    # What a command leaves, locked and deep, as its own user: remove_tree
    # takes it apart, never following the links out.
    outside = Path("outside").resolve()
    outside.mkdir()
    (outside / "kept.txt").write_text("kept")
    proc, workdir = launch("litter", LITTER, sandbox.Limits(), str(outside))
    returncode = proc.wait(60)
    proc.kill()
    try:
        sandbox.remove_tree(workdir)
        outcome = "removed" if not os.path.lexists(workdir) else "left"
    except sandbox.SandboxError as exc:
        outcome = str(exc)
    intact = [p.name for p in outside.iterdir()] == ["kept.txt"]
    intact = intact and (outside / "kept.txt").read_text() == "kept"
    report["remove_tree"] = {"returncode": returncode, "outcome": outcome, "outside_intact": intact}

    print(json.dumps(report))


if __name__ == "__main__":
    main()
