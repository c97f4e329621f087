"""``check("Q5")`` in a notebook: grade what the kernel holds, outside the kernel.

In a cell::

    from grader import check
    check("Q5")      # Q5's public checks; check() grades every question

The source is the kernel's input history (IPython's ``In``: the cells as
they ran, in order), turned into a script by the same rules as a notebook
file (``notebook.extract_cells``): definitions are kept and later ones win,
so the script holds the kernel's current functions, with no need to save
first. Entries that do not compile are left out: the kernel never ran them.
Outside IPython the source is the only ``.ipynb`` of the working directory.

The script is graded in a grading process of the grader's own
(``grader/selfcheck_server.py``), never in the kernel: it is started when
``check`` is imported in a kernel (else by the first ``check``;
``GRADER_CHECK_PRESTART=0`` waits for the first ``check``) and kept while the kernel lives, so that its zygote keeps
TensorFlow imported and each later ``check`` pays only for its items. Its
children are sandboxed exactly as ``make grade``'s, and it, not the kernel,
is their parent (the sandbox's clean-up of stray processes applies to its own
children, never to what the student started from the notebook). It goes when
the kernel goes (its standard input closes), after ten idle minutes, or when
the rubric or the grader changes on disk (the next ``check`` starts another).

What ``check`` returns shows the report as ``make grade`` prints it (text,
and HTML in Jupyter), opening with "public checks: X of Y points can be
checked here", so that a pass on the public checks is not taken for full
marks.
"""

from __future__ import annotations

import atexit
import html
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SelfCheck", "SelfCheckError", "bundle_root", "check", "kernel_source"]

PRESTART_VARIABLE = "GRADER_CHECK_PRESTART"   # 0: start the grading process at the first check
TIMEOUT_SECONDS = 900.0   # a whole check(), model training included, on a loaded machine
_lock = threading.Lock()
_server: subprocess.Popen | None = None


class SelfCheckError(Exception):
    """``check`` cannot grade: no bundle, no notebook, or the grader failed."""


@dataclass(frozen=True)
class SelfCheck:
    """The report of one ``check``: shown as text, or as HTML in Jupyter."""

    question: str | None
    text: str
    exit_code: int
    total: float | None = None
    max_total: float | None = None
    full_total: float | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Every public check of the question(s) passed (not the hidden ones)."""
        return self.exit_code == 0

    def __repr__(self) -> str:
        return self.text.rstrip("\n")

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.text.rstrip())}</pre>"


def bundle_root(start: Path | None = None) -> Path:
    """The folder of the bundle this grader belongs to: the first folder from
    ``start`` (default: the working directory) upwards that holds
    ``rubric.yaml`` and ``grader/``, else the one this package lives in."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "rubric.yaml").is_file() and (folder / "grader" / "__init__.py").is_file():
            return folder
    package_root = Path(__file__).resolve().parent.parent
    if (package_root / "rubric.yaml").is_file():
        return package_root
    raise SelfCheckError(f"no rubric.yaml and grader/ in {here} or above: open the notebook "
                         "from the unzipped tensorflow-tutorial folder")


def _compiles(source: str) -> bool:
    try:
        compile(source, "<cell>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def kernel_source() -> tuple[str, str]:
    """(the script to grade, what to call it): the kernel's history in IPython,
    else the only notebook in the working directory."""
    from . import notebook
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and isinstance(shell.user_ns.get("In"), list):
        history = [str(cell) for cell in shell.user_ns["In"]]
        cells = [cell if _compiles(cell) else "" for cell in history[1:]]
        return notebook.extract_cells(cells), f"this notebook's kernel (cells 1 to {len(cells)})"
    found = sorted(Path.cwd().glob("*.ipynb"))
    if len(found) != 1:
        raise SelfCheckError(f"not in a notebook's kernel, and {len(found)} .ipynb files in "
                             f"{Path.cwd()}: run check() inside the notebook")
    try:
        return notebook.extract(found[0]), found[0].name
    except notebook.NotebookError as exc:
        raise SelfCheckError(f"{found[0].name}: {exc}") from None


def _start(root: Path) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    env.pop("PYTHONPATH", None)   # the bundle's grader, not another one
    return subprocess.Popen([sys.executable, "-m", "grader.selfcheck_server"], cwd=root, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(grace: float = 10.0) -> None:
    """End the grading process: it exits when its input closes (after the
    grade it is running), or is terminated after ``grace`` seconds."""
    global _server
    server, _server = _server, None
    if server is not None and server.poll() is None:
        try:
            server.stdin.close()
            server.wait(grace)
        except (OSError, subprocess.TimeoutExpired):
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


atexit.register(_stop)


def _prestart() -> None:
    """In a notebook's kernel, start the grading process as soon as ``check``
    is imported, so that TensorFlow imports while the student works and the
    first ``check`` finds it warm. Best effort: ``check`` starts it otherwise."""
    global _server
    try:
        from IPython import get_ipython
        shell = get_ipython()
        if shell is None or not hasattr(shell, "kernel") \
                or os.environ.get(PRESTART_VARIABLE) == "0":
            return
        with _lock:
            if _server is None:
                _server = _start(bundle_root())
    except Exception:  # noqa: BLE001 - never break the import for a warm-up
        return


def _ask(request: dict, root: Path, timeout: float) -> dict:
    """One request to the grading process (started now if need be); its answer."""
    global _server
    for _ in range(2):
        if _server is None or _server.poll() is not None:
            _server = _start(root)
        try:
            _server.stdin.write((json.dumps(request) + "\n").encode())
            _server.stdin.flush()
            if not select.select([_server.stdout], [], [], timeout)[0]:
                _stop()
                raise SelfCheckError(f"the grader gave no answer in {timeout:g} s")
            line = _server.stdout.readline()
        except OSError:
            line = b""
        if not line:           # it ended (idle, killed): start another once
            _stop()
            continue
        answer = json.loads(line)
        if answer.get("restart"):  # the rubric or the grader changed on disk
            _stop()
            continue
        return answer
    raise SelfCheckError("the grading process ended without an answer")


def check(question: str | None = None, *, timeout: float = TIMEOUT_SECONDS) -> SelfCheck:
    """Grade this notebook's current functions on ``question``'s public checks
    ("Q5"; None: every question), in the grader's sandbox, outside this kernel.
    What cannot be graded (no bundle, no notebook, an unknown question) is
    one line of the result, with ``exit_code`` 2."""
    started = time.monotonic()
    try:
        if question is not None and not isinstance(question, str):
            raise SelfCheckError(f"check({question!r}): name a question, e.g. check(\"Q5\")")
        root = bundle_root()
        source, label = kernel_source()
        with _lock:
            try:
                answer = _ask({"source": source, "question": question, "label": label}, root,
                              timeout)
            except BaseException:   # interrupted mid-grade: its answer would come late
                _stop(grace=0.0)
                raise
    except SelfCheckError as exc:  # one line in the notebook, not a traceback
        return SelfCheck(question, f"check: {exc}\n", 2, seconds=time.monotonic() - started)
    return SelfCheck(question, str(answer.get("text", "")), int(answer.get("exit_code", 2)),
                     answer.get("total"), answer.get("max_total"), answer.get("full_total"),
                     time.monotonic() - started)


_prestart()
