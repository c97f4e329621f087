"""The zygote: a process that has imported TensorFlow and forks one child per job.

Started by ``zygote.py`` as ``python -s -B zygote_server.py SANDBOX_DIR``
with the environment a grading child gets (threads limited, TensorFlow
quiet) and one end of a SOCK_SEQPACKET socket pair at ``$GRADER_ZYGOTE_FD``.
It imports the child's side of the grader (this package, ``grader/inside/``,
as ``grader_inside``, the name a fresh child's work directory gives it; and
the child's side of the ``sandbox`` package found in SANDBOX_DIR, as
``grader_sandbox``, to enter the sandbox) and
TensorFlow, runs no TensorFlow op and creates no session, checks that a
forked copy of itself can run one, and says ``ready`` (or ``unsafe WHY`` and
exits).

Then each message from the grader is one job: a JSON sandbox configuration
(paths, limits, the uid, the child's environment; nothing secret) with the
descriptors the child needs (a status socket, the result channel, stdout and
stderr). The zygote forks, and the fork enters the sandbox
(``sandbox.enter_forked``: new namespaces, the minimal root, its own uid, no
new privileges, the limits) before it reads a byte of the job; only then does
it run ``runner.main()`` in the job's work directory, exactly as a fresh
``python -m grader_inside.runner`` would. The zygote never reads a job's files, holds
no rubric, seed, reference output or label, and runs no submission code:
every child inherits its memory. It exits when the grader closes the socket.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import time
import traceback

FD_VARIABLE = "GRADER_ZYGOTE_FD"
#: The name of this package in a child: a fresh child's work directory holds a copy under it.
PACKAGE = "grader_inside"
_HERE = os.path.dirname(os.path.abspath(__file__))
_SELF_TEST_SECONDS = 60.0
_MAX_FDS = 16


def _load_package(name: str, directory: str):
    """The package in ``directory`` as ``name``, without running its ``__init__.py``
    (the sandbox's is the grader's side): its modules import their siblings only."""
    package = type(sys)(name)
    package.__path__ = [directory]
    package.__package__ = name
    sys.modules[name] = package
    return package


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _self_test(runner) -> str:
    """Why a forked copy of this process cannot run TensorFlow, or ""."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            np, tf = runner.start_tensorflow()
            with tf.Graph().as_default():
                x = tf.placeholder(tf.float32, [None, 2])
                total = tf.reduce_sum(x * 2.0)
                config = tf.ConfigProto(intra_op_parallelism_threads=1,
                                        inter_op_parallelism_threads=1)
                with tf.Session(config=config) as session:
                    code = 0 if session.run(total, {x: np.ones((2, 2))}) == 8.0 else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + _SELF_TEST_SECONDS
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return "" if code == 0 else f"a forked process could not run a session (status {code})"
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return f"a forked process did not run a session in {_SELF_TEST_SECONDS:g} s"


def _run_job(runner, config: dict) -> None:
    """In the forked child, in the sandbox and unprivileged: be ``python -m
    grader_inside.runner`` in the work directory (the current directory), then exit."""
    code = 1
    try:
        os.environ.clear()
        os.environ.update(config["env"])
        import tempfile
        tempfile.tempdir = None  # TMPDIR is the job's now
        workdir = os.getcwd()
        script = os.path.join(workdir, PACKAGE, "runner.py")
        sys.argv = [script]
        sys.path.insert(0, workdir)  # ``python -m`` puts the current directory first
        runner.__name__ = "__main__"
        runner.__file__ = script
        sys.modules["__main__"] = runner
        code = runner.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    # What the interpreter does at exit: non-daemon threads, atexit, buffers.
    try:
        import threading
        threading._shutdown()
        import atexit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os._exit(code if isinstance(code, int) else 1)


def main() -> int:
    control = socket.socket(fileno=int(os.environ.pop(FD_VARIABLE)))
    # The grader's package directory is not the child's business.
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.realpath(_HERE)]
    try:
        _load_package("grader_sandbox", os.path.abspath(sys.argv[1]))
        sandbox = importlib.import_module("grader_sandbox.forked")
        _load_package(PACKAGE, _HERE)
        runner = importlib.import_module(f"{PACKAGE}.runner")
        runner.start_tensorflow()
    except BaseException as exc:
        control.send(f"unsafe importing TensorFlow failed: {type(exc).__name__}: {exc}"[:2000].encode())
        return 1
    threads = _threads()
    why = f"TensorFlow started {threads - 1} thread(s) at import" if threads > 1 else _self_test(runner)
    if why:
        control.send(f"unsafe {why}".encode())
        return 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the monitors
    sys.stdout.flush()
    sys.stderr.flush()
    control.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, _MAX_FDS)
        except OSError:
            message, fds = b"", []
        if not message:  # the grader has gone: nothing to save, nothing to flush
            os._exit(0)
        try:
            config = json.loads(message)
        except ValueError:
            config = None
        try:
            child = os.fork() if config is not None else -1
        except OSError:
            child = -1  # the grader sees the status socket close, and starts the job fresh
        if child == 0:
            control.detach()  # enter_forked closes every descriptor but the job's
            sandbox.enter_forked(config, fds, lambda config: _run_job(runner, config))
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
