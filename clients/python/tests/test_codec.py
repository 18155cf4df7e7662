"""The sans-IO codec and the name rules, without a daemon."""

from __future__ import annotations

import struct

import pytest

from netcluster import InvalidNameError, ProtocolError
from netcluster import _frame, _names
from netcluster.message import Message


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def deliver(event: str, payload: bytes, client: int = 1, seq: int = 1, node: "int | None" = None,
            channel: "str | None" = None) -> bytes:
    flags = (1 if node is not None else 0) | (2 if channel is not None else 0)
    body = bytes([flags]) + varint(client) + varint(seq)
    if node is not None:
        body += struct.pack("<Q", node)
    if channel is not None:
        body += bytes([len(channel)]) + channel.encode()
    ev = event.encode()
    body += struct.pack("<H", len(ev)) + ev + payload
    return struct.pack("<BI", 0x82, len(body)) + body


def test_deliver_variants_decode() -> None:
    d = _frame.Decoder("A", 0xAB, 1 << 20)
    stream = (
        deliver("x", b"16-byte-payload!", 3, 4)
        + deliver("\u00e9v\u00e9nement", b"", 300, 1 << 40, node=0x1122334455667788, channel="B")
        + struct.pack("<BI", 0x85, 4) + struct.pack("<I", 9)
        + struct.pack("<BIQ", 0x07, 8, 2**64 - 1)
        + struct.pack("<BI", 0x83, 7) + struct.pack("<IB", 5, 1) + b"{}"
        + struct.pack("<BI", 0x84, 9) + struct.pack("<HIB", 7, 0, 1) + b"ab"
    )
    frames = d.feed(stream)
    m1, m2 = frames[0], frames[1]
    assert isinstance(m1, Message) and isinstance(m2, Message)
    assert (m1.event, m1.channel, m1.node, m1.client, m1.seq, m1.bytes()) == (
        "x", "A", 0xAB, 3, 4, b"16-byte-payload!")
    assert (m2.event, m2.channel, m2.node, m2.client, m2.seq, m2.bytes()) == (
        "\u00e9v\u00e9nement", "B", 0x1122334455667788, 300, 1 << 40, b"")
    assert frames[2:] == [
        (_frame.ACK, 9),
        (_frame.PONG, 2**64 - 1),
        (_frame.RESPONSE, 5, False, b"{}"),
        (_frame.ERROR, 7, 0, True, "ab"),
    ]
    assert d.partial == 0


def test_any_split_gives_the_same_frames() -> None:
    stream = b"".join(deliver("ev", bytes([i]) * i, i, i + 1) for i in range(40))
    whole = [(m.event, m.bytes(), m.client, m.seq) for m in _frame.Decoder("A", 1, 4096).feed(stream)]  # type: ignore[union-attr]
    assert len(whole) == 40
    for cut in range(1, len(stream), 7):
        d = _frame.Decoder("A", 1, 4096)
        got = []
        for i in range(0, len(stream), cut):
            for m in d.feed(stream[i : i + cut]):
                assert isinstance(m, Message)
                got.append((m.event, m.bytes(), m.client, m.seq))
        assert got == whole and d.partial == 0


def test_bad_frames_raise() -> None:
    for bad in (
        struct.pack("<BI", 0x10, 0),
        struct.pack("<BI", 0x82, 2) + b"\x00\x01",
        struct.pack("<BI", 0x85, 2) + b"\x00\x00",
        struct.pack("<BI", 0x83, 5) + b"\x00\x00\x00\x00\x02",
        struct.pack("<BI", 0x82, 5000),
    ):
        with pytest.raises(ProtocolError):
            _frame.Decoder("A", 1, 4096).feed(bad)


def test_encoders_match_the_protocol_document() -> None:
    h = _frame.hello(0x01020304, "nm")
    assert h[:5] == b"\x01" + struct.pack("<I", 15)
    assert h[5:] == b"NCLB" + struct.pack("<HHI", 1, 0, 0x01020304) + b"\x02nm"
    s = _frame.subscription(True, 7, [b"a", b"bc"])
    assert s == b"\x02" + struct.pack("<I", 13) + struct.pack("<IH", 7, 2) + b"\x01\x00a\x02\x00bc"
    assert _frame.subscription(False, 0, [b"a"])[0] == 0x03
    p = _frame.publish(b"ev", b"xyz")
    assert p == b"\x04" + struct.pack("<I", 7) + b"\x02\x00evxyz"
    r = _frame.request(9, b"nc-control-status", b"null")
    assert r[0] == 0x05 and struct.unpack_from("<IIH", r, 1) == (27, 9, 17)
    assert _frame.ping(5) == b"\x06" + struct.pack("<IQ", 8, 5)
    assert _frame.hello(1, "\u00e9" * 200)[17] == 254  # cut on a character boundary


def test_name_rules_match_the_daemon() -> None:
    for bad in ("", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", "x" * 256):
        with pytest.raises(InvalidNameError):
            _names.check_channel(bad)
    _names.check_channel("ok-name.1")
    with pytest.raises(InvalidNameError):
        _names.encode_event_name("*")
    assert _names.encode_subscription_name("*") == b"*"
    with pytest.raises(InvalidNameError):
        _names.encode_event_name("e" * 1025)
    assert _names.encode_event_name("e" * 1024) == b"e" * 1024


def test_socket_dir_rule() -> None:
    rule = _names.default_socket_dir
    assert rule({"NETCLUSTER_SOCKET_DIR": "/x", "XDG_RUNTIME_DIR": "/y"}, True)[0] == "/x"
    assert rule({"XDG_RUNTIME_DIR": "/y"}, True)[0] == "/var/run"
    assert rule({"XDG_RUNTIME_DIR": "/y"}, False)[0] == "/y"
    assert rule({"NETCLUSTER_SOCKET_DIR": ""}, False)[0] == "/tmp"


@pytest.mark.parametrize("client", [0, 1, 127, 128, 16383, 16384, 2**40])
@pytest.mark.parametrize("seq", [0, 1, 127, 128, 2**14 - 1, 2**14, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**64 - 1])
def test_varint_fast_and_slow_paths_agree(client: int, seq: int) -> None:
    for payload in (b"", b"p" * 20):
        f = deliver("e", payload, client, seq)
        (m,) = _frame.Decoder("A", 1, 4096).feed(f)
        assert isinstance(m, Message)
        assert (m.client, m.seq, m.event, m.bytes()) == (client, seq, "e", payload)
