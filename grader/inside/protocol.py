"""The wire format between the sandboxed child and the grader, and the child's half.

The child (``runner.py``, run in the sandbox beside the submission) writes
*frames* on a pipe it inherits from the parent; the parent (``grader/protocol.py``,
which imports this module for the format and its caps) reads them on a thread
and validates every byte before anything is materialised. No path is ever
opened on the child's behalf.

A frame is an 8-byte header, ``kind`` (4 ASCII bytes) and the payload's
length (unsigned 32-bit, big-endian), then the payload:

``EVNT``
    one ASCII word: ``ready`` once TensorFlow is imported, before the
    submission's first line runs.
``RSLT``
    one task's result: a 4-byte length, a JSON header
    ``{"task": ID, "meta": {...}, "arrays": [[NAME, DTYPE, SHAPE], ...]}``,
    then the arrays' raw bytes, C order, in the header's order and nothing
    else. DTYPE is a little-endian numeric numpy type string (``<f8``,
    ``|u1``, ...): no objects, strings or structured types. The parent
    checks every size before it allocates anything, refuses trailing or
    missing bytes, and refuses JSON that is too large or too deep.

Standard library and numpy only, like everything in this package.
"""


from __future__ import annotations

import json
import os
import struct

import numpy as np

HEADER = struct.Struct(">4sI")
LENGTH = struct.Struct(">I")
EVENT, RESULT = b"EVNT", b"RSLT"
READY = "ready"

#: Environment variable that tells the child which file descriptor is the channel.
FD_VARIABLE = "GRADER_CHANNEL_FD"

MAX_EVENT_BYTES = 64
MAX_JSON_BYTES = 2 * 2**20
MAX_JSON_DEPTH = 8
MAX_JSON_NODES = 400_000
MAX_ARRAYS = 64
MAX_NDIM = 8
MAX_NAME = 64
MAX_TASK_ID = 100
#: Default caps on one result's payload and on everything one child sends.
MAX_RESULT_BYTES = 8 * 2**20
MAX_TOTAL_BYTES = 32 * 2**20

#: Numeric dtypes a child may send (numpy ``dtype.str``); byte order is little-endian.
DTYPES = frozenset(["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8",
                    "<f2", "<f4", "<f8"])


# ---------------------------------------------------------------- the child's half

def encode_result(task_id: str, outputs: dict) -> bytes:
    """A result payload: ``value_*`` entries become arrays, the rest JSON meta."""
    arrays, meta = [], {}
    for key, value in outputs.items():
        if key.startswith("value_"):
            array = np.asarray(value)  # tobytes() below writes C order
            if array.dtype.kind == "b":
                array = array.astype(np.bool_)
            array = array.astype(array.dtype.newbyteorder("<"), copy=False)
            if array.dtype.str not in DTYPES:
                raise TypeError(f"{key}: dtype {array.dtype} cannot be sent")
            arrays.append((key[len("value_"):], array))
        else:
            meta[key] = value
    header = json.dumps({"task": task_id, "meta": meta,
                         "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in arrays]},
                        default=str, allow_nan=True).encode("utf-8")
    return b"".join([LENGTH.pack(len(header)), header, *(a.tobytes() for _, a in arrays)])


def frame(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class Writer:
    """The child's end: whole frames, written with retries on short writes."""

    def __init__(self, fd: int):
        self.fd = fd

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def event(self, word: str) -> None:
        self._send(frame(EVENT, word.encode("ascii")))

    def result(self, task_id: str, outputs: dict) -> None:
        self._send(frame(RESULT, encode_result(task_id, outputs)))
