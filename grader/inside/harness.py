"""The child's plumbing: what every probe gets (the :class:`Harness`), the
errors that end a task, and plain descriptions of what the submission returned.

Runs in the sandbox, like the rest of ``grader/inside/``; standard library
only: nothing from the grader outside this package.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import traceback

MAX_LIST = 100_000


# --------------------------------------------------------------------------
# plumbing


class _CappedText(io.TextIOBase):
    """A text sink that keeps the first ``cap`` characters and drops the rest."""

    def __init__(self, cap: int):
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        s = str(s)
        room = self.cap - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def text(self) -> str:
        return "".join(self.parts)


class StudentError(Exception):
    """Student code raised, or returned something unusable."""

    def __init__(self, message: str, tb: str = "", unanswered: bool = False):
        super().__init__(message)
        self.tb = tb
        self.unanswered = unanswered  # it raised NotImplementedError: still the starter


def _student_traceback(exc: BaseException, submission: str) -> str:
    """The traceback cut to the submission's own frames."""
    if isinstance(exc, NotImplementedError):
        return ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.basename(f.filename) == submission]
    lines = [f"{submission}, line {f.lineno}, in {f.name}: {(f.line or '').strip()}"
             for f in frames[-6:]]
    return "\n".join(lines)[-4000:]


class Harness:
    """What every probe gets: the submission module, TensorFlow and the job."""

    def __init__(self, module, tf, np, job: dict):
        self.module = module
        self.tf = tf
        self.np = np
        self.job = job
        self.submission = job["submission"]
        self.captured = ""

    def call(self, name: str, *args, **kwargs):
        """Call the submission's ``name``; any exception becomes a StudentError."""
        fn = getattr(self.module, name, None)
        if fn is None or not callable(fn):
            raise StudentError(f"your file defines no function {name}()")
        sink = _CappedText(int(self.job.get("output_chars", 20000)))
        try:
            with contextlib.redirect_stdout(sink):
                return fn(*args, **kwargs)
        except NotImplementedError as exc:
            raise StudentError(f"{name}() is not implemented yet "
                               f"(it raised NotImplementedError)",
                               _student_traceback(exc, self.submission), unanswered=True) from None
        except GraderLimit:
            raise
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too
            message = f"{name}() raised {type(exc).__name__}: {_short(exc)}"
            raise StudentError(message, _student_traceback(exc, self.submission)) from None
        finally:
            self.captured = sink.text()

    def session(self):
        return self.tf.Session(config=self.config())

    def config(self):
        threads = int(self.job.get("threads", 1))
        return self.tf.ConfigProto(intra_op_parallelism_threads=threads,
                                   inter_op_parallelism_threads=threads)

    def run(self, sess, fetches, feed=None, what: str = "evaluating your tensors"):
        try:
            return sess.run(fetches, feed_dict=feed)
        except Exception as exc:
            raise StudentError(f"{what} failed: {type(exc).__name__}: {_short(exc)}") from None


class GraderLimit(Exception):
    """Raised by the grader's own objects when the submission overuses them."""


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_TF_NODE = re.compile(r"\[\[.*?\]\]|\(defined at .*?\)")
_UNINITIALIZED = re.compile(r"(uninitialized value) \S+")


def _short(exc: BaseException) -> str:
    """One reproducible line: no object addresses, temporary paths or graph node names."""
    text = str(exc)
    if type(exc).__module__.startswith("tensorflow"):
        text = text.strip().splitlines()[0] if text.strip() else ""
        text = _UNINITIALIZED.sub(r"\1 of a variable", _TF_NODE.sub("", text))
    text = _ADDRESS.sub("", text).replace(os.getcwd() + os.sep, "")
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


def describe(tf, obj) -> dict:
    """Plain facts about a returned object: type, tensor dtype and static shape."""
    info = {"type": type(obj).__name__, "is_tensor": False}
    try:
        if isinstance(obj, tf.Variable):
            info["is_variable"] = True
        if isinstance(obj, (tf.Tensor, tf.Variable)):
            info["is_tensor"] = True
            info["dtype"] = str(obj.dtype.base_dtype.name)
            dims = obj.shape.as_list() if obj.shape.dims is not None else None
            info["shape"] = None if dims is None else [None if d is None else int(d) for d in dims]
            info["op"] = str(obj.op.type)
        elif isinstance(obj, tf.Operation):
            info["op"] = str(obj.type)
    except Exception as exc:  # a rigged object: report what we can
        info["describe_error"] = _short(exc)
    return info


def _float_list(np, values) -> tuple[list, list]:
    """Convert a returned sequence to floats, remembering each element's type."""
    floats, types = [], []
    for v in list(values)[:MAX_LIST]:
        types.append(type(v).__name__)
        try:
            floats.append(float(np.asarray(v, dtype=np.float64).reshape(())))
        except Exception:
            floats.append(float("nan"))
    return floats, types
