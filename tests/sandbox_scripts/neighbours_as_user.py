"""Two basic sandboxes side by side, as an unprivileged user; prints a JSON report.

tests/test_cgroups.py runs this as a non-root uid (setpriv, no chroot: a
chrooted process may not make user namespaces), next to a copy of the
grader/sandbox/ package. One sandbox grabs threads in bursts, as many as it
can; its honest neighbour starts a small pool of threads again and again, as
TensorFlow does. The report says how often the honest one could not.
"""

import json
import os
import sys
import textwrap
import time
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
    report["left"] = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()
                      and os.stat(f"/proc/{p}").st_uid == os.getuid()]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
