"""grader/protocol.py: the channel from the child, read as a hostile child would write it.

No TensorFlow: the frames are forged by hand and by hypothesis, and fed to the
parent's reader through a real pipe.
"""

from __future__ import annotations

import json
import os
import struct
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader import protocol
from grader.protocol import EVENT, HEADER, LENGTH, RESULT, ProtocolError

CAP = 1 << 20  # the reader's per-result cap in these tests


def result_payload(task="Q5-public", meta=None, arrays=()):
    """A payload by hand: arrays as (name, dtype string, shape, raw bytes)."""
    header = json.dumps({"task": task, "meta": meta or {},
                         "arrays": [[n, d, list(s)] for n, d, s, _ in arrays]}).encode()
    return LENGTH.pack(len(header)) + header + b"".join(raw for *_, raw in arrays)


def read_all(data: bytes, max_result=CAP, max_total=4 * CAP,
             shared: protocol.ByteBudget | None = None) -> list[protocol.Message]:
    """Feed ``data`` through a pipe to a Reader; every message up to the end."""
    r, w = os.pipe()
    reader = protocol.Reader(r, max_result, max_total, shared=shared)

    def write():
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(w, view[:65536]):]
        except BrokenPipeError:  # the reader gave up on a violation: as a child would see it
            pass
        finally:
            os.close(w)
    writer = threading.Thread(target=write)
    writer.start()
    messages = []
    while True:
        message = reader.get(30)
        assert message is not None, "the reader neither finished nor reported"
        messages.append(message)
        if message.kind in ("eof", "violation"):
            break
    writer.join(30)
    assert reader.join(30)
    return messages


def test_events_and_results_round_trip():
    writer_r, writer_w = os.pipe()
    channel = protocol.Writer(writer_w)
    channel.event(protocol.READY)
    channel.result("Q4-public", {"Z2": {"dtype": "float32", "shape": [None, 10]},
                                 "value_Z2": np.arange(6, dtype=np.float32).reshape(2, 3),
                                 "value_flag": np.array([True, False]),
                                 "value_n": np.int64(7)})
    os.close(writer_w)
    data = b""
    while chunk := os.read(writer_r, 65536):
        data += chunk
    os.close(writer_r)
    ready, result, end = read_all(data)
    assert (ready.kind, ready.word) == ("event", "ready")
    assert result.kind == "result" and result.task == "Q4-public"
    assert result.meta == {"Z2": {"dtype": "float32", "shape": [None, 10]}}
    assert result.arrays["Z2"].dtype == np.float32 and result.arrays["Z2"].tolist() == [[0, 1, 2],
                                                                                     [3, 4, 5]]
    assert result.arrays["flag"].tolist() == [True, False] and int(result.arrays["n"]) == 7
    assert result.arrays["Z2"].flags.writeable
    assert end.kind == "eof"


def test_the_child_cannot_send_objects():
    with pytest.raises(TypeError):
        protocol.encode_result("a", {"value_x": np.array([object()], dtype=object)})
    with pytest.raises(TypeError):
        protocol.encode_result("a", {"value_x": np.array(["text"])})


@pytest.mark.parametrize("arrays, why", [
    ([("x", "|O", [1], b"\0" * 8)], "not a plain number"),
    ([("x", "<U4", [1], b"\0" * 16)], "not a plain number"),
    ([("x", ">f8", [1], b"\0" * 8)], "not a plain number"),             # big-endian
    ([("x", "<f8", [2**39, 2**39], b"")], "do not match"),             # 2**78 elements claimed
    ([("x", "<f8", [2**40], b"")], "malformed shape"),
    ([("x", "<f8", [-1], b"")], "malformed shape"),
    ([("x", "<f8", [True], b"\0" * 8)], "malformed shape"),
    ([("x", "<f8", [1] * 9, b"\0" * 8)], "malformed shape"),
    ([("x", "<f8", [3], b"\0" * 8)], "do not match"),                  # short
    ([("x", "<f8", [1], b"\0" * 16)], "do not match"),                 # trailing bytes
    ([("x", "<f8", [1], b"\0" * 8), ("x", "<f8", [1], b"\0" * 8)], "twice"),
    ([("", "<f8", [1], b"\0" * 8)], "no usable name"),
])
def test_array_descriptions_are_checked_before_anything_is_made(arrays, why):
    with pytest.raises(ProtocolError, match=why):
        protocol.decode_result(result_payload(arrays=arrays))


def test_deep_wide_and_broken_json_is_refused():
    deep = b"[" * 100_000 + b"]" * 100_000
    header = b'{"task": "a", "meta": {"x": ' + deep + b'}, "arrays": []}'
    with pytest.raises(ProtocolError, match="nested too deeply"):
        protocol.decode_result(LENGTH.pack(len(header)) + header)
    nine = json.loads("[" * 9 + "]" * 9)
    with pytest.raises(ProtocolError, match="nested too deeply"):
        protocol.decode_result(result_payload(meta={"x": nine}))
    with pytest.raises(ProtocolError, match="too many values"):
        protocol.decode_result(result_payload(meta={"x": [0] * (protocol.MAX_JSON_NODES + 1)}),
                               max_bytes=8 * 2**20)
    for header in (b"\xff\xfe", b"[1, 2]", b'{"task": "a"}', b'{"task": 5, "meta": {}, "arrays": []}'):
        with pytest.raises(ProtocolError):
            protocol.decode_result(LENGTH.pack(len(header)) + header)
    with pytest.raises(ProtocolError, match="truncated"):
        protocol.decode_result(LENGTH.pack(1000) + b"{}")


def test_a_huge_frame_is_refused_from_its_header_without_reading_it():
    # 4 GiB announced, 16 bytes sent: the reader stops at the header
    messages = read_all(HEADER.pack(RESULT, 2**32 - 1) + b"x" * 16)
    assert [m.kind for m in messages] == ["violation"]
    assert "larger than the grader accepts" in messages[0].error


def test_the_total_a_child_may_send_is_capped():
    one = protocol.frame(RESULT, result_payload(arrays=[("x", "|u1", [CAP // 2], b"\0" * (CAP // 2))]))
    messages = read_all(one * 10, max_total=3 * CAP)
    assert [m.kind for m in messages][-1] == "violation"
    assert sum(m.kind == "result" for m in messages) <= 6


def test_readers_side_by_side_share_one_budget_live():
    """Two children read at once (the model's group beside the rest) cannot each spend the
    whole budget: beyond its own allowance, every frame is taken from one shared pool."""
    one = protocol.frame(RESULT, result_payload(arrays=[("x", "|u1", [CAP // 2], b"\0" * (CAP // 2))]))
    pool = protocol.ByteBudget(3 * len(one))
    outcomes = [None, None]

    def child(i):
        outcomes[i] = read_all(one * 8, max_total=len(one), shared=pool)
    threads = [threading.Thread(target=child, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    accepted = [sum(m.kind == "result" for m in out) for out in outcomes]
    assert sum(accepted) == 2 + 3, accepted   # one frame each of their own, three from the pool
    assert all(out[-1].kind == "violation" for out in outcomes)
    assert pool.left < len(one)


def test_unknown_frames_and_a_bad_result_do_not_stop_the_good_ones():
    good = protocol.frame(RESULT, result_payload("Q2-public"))
    bad = protocol.frame(RESULT, b"\0\0\0\x05hello")
    kinds = [m.kind for m in read_all(bad + good)]
    assert kinds == ["bad-result", "result", "eof"]
    assert [m.kind for m in read_all(b"ZZZZ" + b"\0" * 4 + good)] == ["violation"]
    assert [m.kind for m in read_all(HEADER.pack(EVENT, 10_000))] == ["violation"]
    assert [m.kind for m in read_all(good[:20])] == ["eof"]  # cut off mid-frame


# ------------------------------------------------------------------ fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30)
dtypes = st.sampled_from(sorted(protocol.DTYPES) + ["|O", "<U3", ">f8", "|V8", "<c16", "<M8[s]"])
shapes = st.lists(st.integers(-2, 2**41), max_size=10) | st.lists(st.integers(0, 6), max_size=3)
specs = st.lists(st.tuples(st.text(max_size=8), dtypes, shapes), max_size=4)


@st.composite
def hostile_frames(draw):
    """One frame as a hostile child might write it: valid, mutated, or junk."""
    choice = draw(st.integers(0, 5))
    if choice == 0:  # a plausible result with random descriptions and random bytes
        arrays = [(n, d, s, b"") for n, d, s in draw(specs)]
        payload = result_payload(draw(st.text(max_size=120)), draw(st.dictionaries(
            st.text(max_size=5), json_values, max_size=4)), arrays)
        return protocol.frame(RESULT, payload + draw(st.binary(max_size=256)))
    if choice == 1:  # a valid result, then bytes flipped or cut
        raw = protocol.frame(RESULT, result_payload(arrays=[("x", "<f8", [4], b"\1" * 32)]))
        cut = draw(st.integers(0, len(raw)))
        flip = draw(st.binary(max_size=8))
        return raw[:cut] + flip + raw[cut + len(flip):]
    if choice == 2:  # a header with any kind and length
        return HEADER.pack(draw(st.sampled_from([EVENT, RESULT, b"XXXX"])),
                           draw(st.integers(0, 2**32 - 1))) + draw(st.binary(max_size=64))
    if choice == 3:  # raw bytes
        return draw(st.binary(max_size=512))
    if choice == 4:
        return protocol.frame(EVENT, draw(st.binary(max_size=80)))
    header = draw(st.binary(max_size=200))  # a JSON header that is not JSON
    return protocol.frame(RESULT, LENGTH.pack(len(header)) + header + draw(st.binary(max_size=64)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_frames(), max_size=6))
def test_the_reader_never_raises_and_never_exceeds_its_caps(frames):
    messages = read_all(b"".join(frames), max_result=CAP, max_total=2 * CAP)
    assert messages[-1].kind in ("eof", "violation")
    received = 0
    for message in messages:
        assert message.kind in ("event", "result", "bad-result", "violation", "eof")
        for name, array in message.arrays.items():
            assert array.dtype.str in protocol.DTYPES and array.dtype.kind in "biuf"
            received += array.nbytes
        if message.kind == "result":
            assert isinstance(message.meta, dict) and isinstance(message.task, str)
    assert received <= 2 * CAP


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_decode_result_accepts_or_refuses_any_bytes(payload):
    try:
        task, meta, arrays = protocol.decode_result(payload, CAP)
    except ProtocolError:
        return
    assert isinstance(task, str) and isinstance(meta, dict)
    assert all(a.dtype.str in protocol.DTYPES for a in arrays.values())
