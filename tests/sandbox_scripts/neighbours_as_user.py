"""Two basic sandboxes side by side, as an unprivileged user; prints a JSON report.

tests/test_cgroups.py runs this as a non-root uid (setpriv, no chroot: a
chrooted process may not make user namespaces), next to a copy of the
grader/sandbox/ package. One sandbox grabs threads in bursts, as many as it
can; its honest neighbour starts a small pool of threads again and again, as
TensorFlow does. The report says how often the honest one could not, and
what a command forked from a fork server (server.py, as the zygote forks
one) gets: its uid, RLIMIT_NPROC and capabilities.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from grader import sandbox

HOG = """
    import os, threading, time
    stop = threading.Event()
    open("started", "w").close()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        held = []
        try:
            for _ in range(4000):  # kept until the process ends
                thread = threading.Thread(target=stop.wait, daemon=True)
                thread.start()
                held.append(thread)
        except RuntimeError:
            pass
        time.sleep(0.02)
    os._exit(0)
"""

HONEST = """
    import json, os, threading, time
    while not os.path.exists(os.path.join({hog!r}, "started")):
        time.sleep(0.01)
    failures, rounds = 0, 0
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        rounds += 1
        done = threading.Event()
        pool = []
        try:
            for _ in range(12):
                thread = threading.Thread(target=done.wait)
                thread.start()
                pool.append(thread)
        except RuntimeError:
            failures += 1
        done.set()
        for thread in pool:
            thread.join()
        time.sleep(0.01)
    print(json.dumps({{"rounds": rounds, "failures": failures}}))
"""


def launch(name: str, source: str) -> sandbox.SandboxedProcess:
    workdir = Path(name).resolve()
    workdir.mkdir()
    (workdir / "main.py").write_text(textwrap.dedent(source))
    env = {"LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    limits = sandbox.Limits(processes=64)
    return sandbox.start([sys.executable, "main.py"], workdir, limits, env, "basic")


FACTS = """
import json, os, resource
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"uid": os.getuid(), "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
                  "cap_eff": int(status["CapEff"], 16), "cap_prm": int(status["CapPrm"], 16),
                  "no_new_privs": status["NoNewPrivs"].strip()}))
"""


def forked_facts() -> dict:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server = subprocess.Popen([sys.executable, "server.py", str(theirs.fileno()), os.getcwd()],
                              pass_fds=(theirs.fileno(),))
    theirs.close()
    workdir = Path("forked").resolve()
    workdir.mkdir()
    (workdir / "main.py").write_text(FACTS)

    def request(config: dict, fds: list) -> None:
        socket.send_fds(ours, [json.dumps(config).encode()], fds)

    proc = sandbox.start_forked(request, workdir, sandbox.Limits(processes=64), {}, "basic")
    code = proc.wait(60)
    proc.kill()
    ours.close()
    server.wait(10)
    return {"returncode": code, **json.loads(proc.result().stdout or "{}")}


def running(pid: int) -> bool:
    """Alive and not a zombie (this process is a subreaper: it inherits the fork server's)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


def main() -> None:
    report = {"uid": os.getuid(), "isolation": sandbox.detect_isolation("auto")}
    hog = launch("hog", HOG)
    honest = launch("honest", HONEST.format(hog=str(Path("hog").resolve())))
    report["resources"] = honest.resources
    honest_code = honest.wait(60)
    hog.wait(60)
    hog.kill()
    honest.kill()
    report["honest"] = {"returncode": honest_code, **json.loads(honest.result().stdout or "{}")}
    report["forked"] = forked_facts()
    report["left"] = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()
                      and os.stat(f"/proc/{p}").st_uid == os.getuid() and running(int(p))]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
