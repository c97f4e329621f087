"""The parent's half of the channel from the sandboxed child: reading and validating frames.

The wire format, its caps and the child's half (:class:`Writer`,
:func:`encode_result`) live in ``grader/inside/protocol.py``, which the
child imports inside the sandbox; this module reads what a child wrote, on
a thread, and validates every byte before anything is materialised.

Everything malformed is a :class:`ProtocolError`, which the grader turns
into the submission's error for that item (never "ungradable"). The parent
owns every clock: a frame only ever *ends* a phase early.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time

import numpy as np

from .inside.protocol import (DTYPES, EVENT, FD_VARIABLE, HEADER, LENGTH, MAX_ARRAYS,
                              MAX_EVENT_BYTES, MAX_JSON_BYTES, MAX_JSON_DEPTH, MAX_JSON_NODES,
                              MAX_NAME, MAX_NDIM, MAX_RESULT_BYTES, MAX_TASK_ID, MAX_TOTAL_BYTES,
                              READY, RESULT, Writer, encode_result, frame)

__all__ = ["DTYPES", "EVENT", "FD_VARIABLE", "HEADER", "READY", "RESULT", "ByteBudget", "Message",
           "ProtocolError", "Reader", "Writer", "decode_result", "encode_result", "frame"]

_READ_CHUNK = 1 << 20


class ProtocolError(Exception):
    """A frame or a result that breaks the wire format: the child's fault."""



def _check_plain_json(value) -> None:
    """Plain JSON only, within depth and size caps; iterative (no deep recursion)."""
    stack, nodes = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise ProtocolError("the result has too many values")
        if depth > MAX_JSON_DEPTH:
            raise ProtocolError("the result is nested too deeply")
        if item is None or isinstance(item, (bool, int, str)):
            continue
        if isinstance(item, float):
            continue
        if isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        else:  # json.loads makes nothing else; a saved file might
            raise ProtocolError(f"the result holds a {type(item).__name__}")


def _load_json(raw: bytes):
    if len(raw) > MAX_JSON_BYTES:
        raise ProtocolError("the result's description is too large")
    try:
        value = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ProtocolError("the result is nested too deeply") from None
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("the result is not valid JSON") from None
    _check_plain_json(value)
    return value


def _array_spec(spec) -> tuple[str, np.dtype, tuple[int, ...], int]:
    if not (isinstance(spec, list) and len(spec) == 3):
        raise ProtocolError("an array description is malformed")
    name, dtype, shape = spec
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise ProtocolError("an array has no usable name")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ProtocolError(f"array {name[:MAX_NAME]!r} has a type that is not a plain number")
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40
                       for d in shape)):
        raise ProtocolError(f"array {name!r} has a malformed shape")
    dt = np.dtype(dtype)
    return name, dt, tuple(shape), math.prod(shape) * dt.itemsize


def decode_result(payload: bytes | bytearray | memoryview,
                  max_bytes: int = MAX_RESULT_BYTES) -> tuple[str, dict, dict]:
    """``(task id, meta, arrays)`` from a result payload; ProtocolError if malformed.

    Sizes are checked against the payload and ``max_bytes`` before any array
    is made; arrays are copies (writable, independent of the payload).
    """
    data = memoryview(payload)
    if len(data) > max_bytes:
        raise ProtocolError(f"the result is larger than {max_bytes} bytes")
    if len(data) < LENGTH.size:
        raise ProtocolError("the result is truncated")
    (json_len,) = LENGTH.unpack_from(data, 0)
    if json_len > min(MAX_JSON_BYTES, len(data) - LENGTH.size):
        raise ProtocolError("the result's description is truncated or too large")
    header = _load_json(bytes(data[LENGTH.size:LENGTH.size + json_len]))
    if not isinstance(header, dict) or set(header) != {"task", "meta", "arrays"}:
        raise ProtocolError("the result's description is malformed")
    task, meta, specs = header["task"], header["meta"], header["arrays"]
    if not isinstance(task, str) or not task or len(task) > MAX_TASK_ID:
        raise ProtocolError("the result names no task")
    if not isinstance(meta, dict) or not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise ProtocolError("the result's description is malformed")
    parsed = [_array_spec(spec) for spec in specs]
    if len({name for name, *_ in parsed}) != len(parsed):
        raise ProtocolError("the result names an array twice")
    offset = LENGTH.size + json_len
    if sum(size for *_, size in parsed) != len(data) - offset:
        raise ProtocolError("the result's arrays do not match their description")
    arrays = {}
    for name, dt, shape, size in parsed:
        flat = np.frombuffer(data, dtype=dt, count=size // dt.itemsize if dt.itemsize else 0,
                             offset=offset)
        arrays[name] = flat.reshape(shape).copy()
        offset += size
    return task, meta, arrays


class Message:
    """What the reader hands over: an event, a result, the end, or a violation."""

    __slots__ = ("kind", "at", "word", "task", "meta", "arrays", "error")

    def __init__(self, kind: str, at: float, *, word: str = "", task: str = "",
                 meta: dict | None = None, arrays: dict | None = None, error: str = ""):
        self.kind = kind          # "event" | "result" | "bad-result" | "violation" | "eof"
        self.at = at              # the parent's monotonic clock when it arrived
        self.word = word
        self.task = task
        self.meta = meta or {}
        self.arrays = arrays or {}
        self.error = error

    def __repr__(self) -> str:
        return f"Message({self.kind!r}, word={self.word!r}, task={self.task!r}, error={self.error!r})"


def _read_exact(fd: int, n: int) -> bytearray | None:
    """n bytes, or None at EOF first. Allocates only what it has received."""
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(_READ_CHUNK, n - len(buf)))
        if not chunk:
            return None
        buf += chunk
    return buf


class ByteBudget:
    """Bytes that several readers (the children of one grade, also when two
    run side by side) may still accept between them, taken frame by frame
    before a frame's payload is read."""

    def __init__(self, total: int):
        self._left = total
        self._lock = threading.Lock()

    @property
    def left(self) -> int:
        return self._left

    def take(self, n: int) -> bool:
        """Take ``n`` bytes if that many are left."""
        with self._lock:
            if n > self._left:
                return False
            self._left -= n
            return True


class Reader:
    """The parent's end: reads frames on a thread into a queue, within caps.

    A frame over ``max_result_bytes`` or an unknown kind is a violation: the
    reader stops and closes its end (the child then gets EPIPE). More than
    ``max_total_bytes`` in all is a violation too. A result that breaks the
    format arrives as ``bad-result`` with the reason, and reading goes on.
    """

    def __init__(self, fd: int, max_result_bytes: int = MAX_RESULT_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES, shared: "ByteBudget | None" = None):
        self.fd = fd
        self.max_result_bytes = max_result_bytes
        self.max_total_bytes = max_total_bytes  # this reader's own; beyond it, ``shared``'s
        self.shared = shared
        self.received = 0  # bytes of accepted frames, for a budget across children
        self.messages: queue.Queue[Message] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"channel-{fd}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        total = 0
        try:
            while True:
                head = _read_exact(self.fd, HEADER.size)
                if head is None:
                    self._put("eof")
                    return
                kind, length = HEADER.unpack(head)
                frame = HEADER.size + length
                own = total + frame <= self.max_total_bytes
                total += frame
                if kind == EVENT and length > MAX_EVENT_BYTES or kind == RESULT and \
                        length > self.max_result_bytes:
                    self._put("violation", error="sent a result larger than the grader accepts")
                    return
                if kind not in (EVENT, RESULT):
                    self._put("violation", error="sent something that is not a result")
                    return
                if not own and (self.shared is None or not self.shared.take(frame)):
                    self._put("violation", error="sent more data than the grader accepts")
                    return
                payload = _read_exact(self.fd, length)
                if payload is None:
                    self._put("eof")
                    return
                self.received = total
                if kind == EVENT:
                    word = payload.decode("ascii", "replace")
                    self._put("event", word=word)
                    continue
                try:
                    task, meta, arrays = decode_result(payload, self.max_result_bytes)
                except ProtocolError as exc:
                    self._put("bad-result", error=str(exc))
                    continue
                finally:
                    del payload
                self._put("result", task=task, meta=meta, arrays=arrays)
        except OSError as exc:
            self._put("violation", error=f"the channel failed: {exc.strerror}")
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass

    def _put(self, kind: str, **fields) -> None:
        self.messages.put(Message(kind, time.monotonic(), **fields))

    def get(self, timeout: float) -> Message | None:
        try:
            return self.messages.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()
