"""The receive path (``_receive.Receiver``) without a daemon: reads cut
anywhere, many frames per read, listeners changing in the middle of a read.
The reference is the plain codec (``Decoder.feed``)."""

from __future__ import annotations

import logging
import struct
from typing import Any, List, Tuple

import pytest

from netcluster import ProtocolError, _frame
from netcluster._listeners import Entry, Table
from netcluster._receive import Receiver
from netcluster.message import Message

from test_codec import deliver, varint


def ack(n: int) -> bytes:
    return struct.pack("<BI", 0x85, 4) + struct.pack("<I", n)


def pong(n: int) -> bytes:
    return struct.pack("<BIQ", 0x07, 8, n)


def fields(m: Message) -> Tuple[Any, ...]:
    return (m.event, m.channel, m.node, m.client, m.seq, m.bytes())


class Rig:
    """A receiver over a real listener table, recording what it dispatches."""

    def __init__(self) -> None:
        self.table = Table()
        self.log: List[Tuple[Any, ...]] = []
        self.removed: List[int] = []
        self.next_id = 0
        self.rx = Receiver(_frame.Decoder("A", 0xAB, 1 << 20), self.table, self.control,
                           self.remove, "A")

    def control(self, f: Tuple[Any, ...]) -> None:
        self.log.append(("control",) + tuple(f))

    def remove(self, lid: int) -> bool:
        self.removed.append(lid)
        return self.table.remove(lid) is not None

    def on(self, event: str, fn: Any, once: bool = False) -> int:
        self.next_id += 1
        self.table.add(Entry(self.next_id, event, fn, once))
        return self.next_id

    def record(self, tag: str) -> Any:
        return lambda m: self.log.append((tag,) + fields(m))


def mixed_stream() -> bytes:
    """Every decoding path: fast and slow varints, other channels and nodes,
    empty payloads, event changes, control frames in between."""
    parts = []
    for i, (client, seq) in enumerate([(1, 1), (127, 128), (128, 2**14), (16383, 2**21 - 1),
                                       (16384, 2**28), (3, 2**28 - 1), (0, 2**64 - 1)]):
        parts.append(deliver("ev", bytes([i]) * (i * 3), client, seq))
        parts.append(deliver("other", b"{}", client, seq + 1))
    parts.insert(3, ack(7))
    parts.insert(6, pong(9))
    parts.append(deliver("ev", b"far", 5, 6, node=0x1122334455667788, channel="B"))
    parts.append(deliver("\u00e9v", b"", 5, 7))
    parts.append(deliver("ev", b"x" * 16, 5, 8))
    parts.append(ack(8))
    return b"".join(parts)


def reference(stream: bytes) -> List[Tuple[Any, ...]]:
    out: List[Tuple[Any, ...]] = []
    for f in _frame.Decoder("A", 0xAB, 1 << 20).feed(stream):
        out.append(("all",) + fields(f) if isinstance(f, Message) else ("control",) + tuple(f))
    return out


def test_a_frame_split_at_every_byte_position() -> None:
    stream = mixed_stream()
    want = reference(stream)
    assert len(want) == 20
    for cut in range(len(stream) + 1):
        rig = Rig()
        rig.on("*", rig.record("all"))
        rig.rx.feed(stream[:cut])
        rig.rx.feed(stream[cut:])
        assert rig.log == want, f"cut at byte {cut}"
        assert rig.rx.decoder.partial == 0
    rig = Rig()
    rig.on("*", rig.record("all"))
    for i in range(len(stream)):
        rig.rx.feed(stream[i : i + 1])
    assert rig.log == want


def test_frames_of_one_size_from_several_emitters_and_seq_widths() -> None:
    """Runs of frames of one size take a shortcut keyed on their first
    bytes: other clients, and seq varints of other widths compensated by
    the payload (same frame size), must still decode exactly."""
    parts = []
    for i in range(400):
        client = (1, 2, 1, 1, 300, 300, 1, 16384)[i % 8]
        seq = (2**28 - 1, 2**28, 5, 2**21, 2**14 - 1, 2**64 - 1)[i % 6] + i
        body_len = 40  # pad every frame to the same size
        head = len(varint(client)) + len(varint(seq))
        parts.append(deliver("e", b"#" * (body_len - head), client, seq))
    stream = b"".join(parts)
    want = reference(stream)
    assert len({len(p) for p in parts}) == 1 and len(want) == 400
    for step in (len(stream), 4096, 333, 41):
        rig = Rig()
        rig.on("*", rig.record("all"))
        for i in range(0, len(stream), step):
            rig.rx.feed(stream[i : i + step])
        assert rig.log == want, f"reads of {step} bytes"


def test_order_across_reads_with_controls_between() -> None:
    frames = []
    for i in range(3000):
        frames.append(deliver("a" if i % 500 < 400 else "b", i.to_bytes(4, "little"), 9, i + 1))
        if i % 700 == 0:
            frames.append(ack(i))
    stream = b"".join(frames)
    rig = Rig()
    rig.on("a", rig.record("a"))
    rig.on("b", rig.record("b"))
    for i in range(0, len(stream), 4096):
        rig.rx.feed(stream[i : i + 4096])
    seqs = [e[5] for e in rig.log if e[0] != "control"]
    assert seqs == list(range(1, 3001))
    assert [e[2] for e in rig.log if e[0] == "control"] == [0, 700, 1400, 2100, 2800]
    # Each ack comes right after the message before it in the stream.
    idx = [i for i, e in enumerate(rig.log) if e[0] == "control"]
    assert [rig.log[i - 1][5] for i in idx[1:]] == [701, 1401, 2101, 2801]


# Payloads of 4+ bytes give a Deliver body of 9+ bytes: the receiver's fast
# path (shorter ones take the general decoder, covered by the split test).


def test_listener_removed_in_the_middle_of_a_read() -> None:
    stream = b"".join(deliver("a", b"pay!", 2, i + 1) for i in range(200))
    rig = Rig()
    got: List[int] = []
    other: List[int] = []
    ids: List[int] = []

    def sole(m: Message) -> None:
        got.append(m.seq)
        if m.seq == 10:
            rig.remove(ids[0])

    ids.append(rig.on("a", sole))
    rig.rx.feed(stream)  # one read: the only listener removes itself at 10
    assert got == list(range(1, 11))

    rig = Rig()
    got, ids = [], []

    def first(m: Message) -> None:
        if m.seq == 50:
            rig.remove(ids[1])

    ids.append(rig.on("a", first))
    ids.append(rig.on("a", lambda m: got.append(m.seq)))
    ids.append(rig.on("*", lambda m: other.append(m.seq)))
    rig.rx.feed(stream)
    # The removal is seen from the next message on; the message being
    # dispatched still reaches the listeners it was dispatched to.
    assert got == list(range(1, 51))
    assert other == list(range(1, 201))


def test_listener_added_in_the_middle_of_a_read_gets_the_rest() -> None:
    stream = b"".join(deliver("a", b"pay!", 2, i + 1) for i in range(100))
    rig = Rig()
    late: List[int] = []

    def adder(m: Message) -> None:
        if m.seq == 30:
            rig.on("a", lambda m: late.append(m.seq))

    rig.on("a", adder)
    rig.rx.feed(stream)
    assert late == list(range(31, 101))


def test_once_fires_exactly_once_within_a_read() -> None:
    stream = b"".join(deliver("a", b"pay!", 2, i + 1) for i in range(300))
    rig = Rig()
    once: List[int] = []
    alone: List[int] = []
    every: List[int] = []
    lid = rig.on("a", lambda m: once.append(m.seq), once=True)
    rig.on("a", lambda m: every.append(m.seq))
    rig.rx.feed(stream)
    assert once == [1] and every == list(range(1, 301))
    assert rig.removed == [lid] and rig.table.by_event["a"][0].once is False
    # A once listener alone on its event (no fan-out around it).
    rig = Rig()
    rig.on("b", lambda m: alone.append(m.seq), once=True)
    rig.rx.feed(stream.replace(b"\x01\x00a", b"\x01\x00b"))
    assert alone == [1] and "b" not in rig.table.by_event


def test_a_handler_that_raises_is_logged_and_the_read_goes_on(caplog: Any) -> None:
    stream = b"".join(deliver("a", b"pay!", 2, i + 1) for i in range(20))
    rig = Rig()
    got: List[int] = []

    def bad(m: Message) -> None:
        got.append(m.seq)
        if m.seq % 5 == 0:
            raise ValueError("boom")

    rig.on("a", bad)
    with caplog.at_level(logging.ERROR, logger="netcluster"):
        rig.rx.feed(stream)
    assert got == list(range(1, 21))
    assert sum("listener for 'a' on channel 'A' raised" in r.getMessage() for r in caplog.records) == 4


def test_base_exception_in_a_handler_keeps_the_incomplete_frame() -> None:
    stream = b"".join(deliver("a", b"pay!", 2, i + 1) for i in range(10))
    cut = len(stream) - 4  # the last frame is incomplete in the first read
    rig = Rig()
    got: List[int] = []

    def stop(m: Message) -> None:
        got.append(m.seq)
        if m.seq == 3:
            raise KeyboardInterrupt

    rig.on("a", stop)
    with pytest.raises(KeyboardInterrupt):
        rig.rx.feed(stream[:cut])
    assert got == [1, 2, 3]
    # The exception ended that read; the frames after it (4..9 and the
    # start of 10) are kept, not lost, and dispatched with the next read.
    rig.rx.feed(stream[cut:])
    assert got == list(range(1, 11))
    assert rig.rx.decoder.partial == 0


def test_bad_frame_after_good_ones_raises_after_dispatching_them() -> None:
    stream = b"".join(deliver("a", b"pay!", 2, i + 1) for i in range(5)) + struct.pack("<BI", 0x10, 0)
    rig = Rig()
    got: List[int] = []
    rig.on("a", lambda m: got.append(m.seq))
    with pytest.raises(ProtocolError, match="unknown frame type 0x10"):
        rig.rx.feed(stream)
    assert got == [1, 2, 3, 4, 5]
