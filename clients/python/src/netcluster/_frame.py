"""The native local protocol (docs/PROTOCOL.md §1) as a sans-IO codec.

Encoders build client-to-server frames as ``bytes``; :class:`Decoder` turns
a byte stream cut anyhow into reads into decoded server-to-client frames.
No sockets, no event loop: the connection modules feed it and act on what
it returns.

Every frame is ``type u8 | body length u32 LE | body``. Deliver frames,
nearly all of the traffic, become :class:`~netcluster.message.Message`
objects whose payload is a memoryview into the read buffer (no copy); the
other frames become small tuples whose first item is the frame type.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .errors import ProtocolError
from .message import Message

MAGIC = b"NCLB"
VERSION = 1
HEADER_LEN = 5
#: Body bytes a frame may need beyond its payload (event name, header fields).
FRAME_OVERHEAD = 1024 + 512

HELLO = 0x01
SUBSCRIBE = 0x02
UNSUBSCRIBE = 0x03
PUBLISH = 0x04
REQUEST = 0x05
PING = 0x06
PONG = 0x07
WELCOME = 0x81
DELIVER = 0x82
RESPONSE = 0x83
ERROR = 0x84
ACK = 0x85

_SERVER_KINDS = frozenset((WELCOME, DELIVER, RESPONSE, ERROR, ACK, PING, PONG))
_DELIVER_REMOTE = 0x01
_DELIVER_CHANNEL = 0x02
#: Decoded event names kept, so a run of one event decodes its name once.
_EVENT_CACHE_MAX = 4096

_HDR = struct.Struct("<BI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_WELCOME = struct.Struct("<HHQQIB")
_ERROR = struct.Struct("<HIB")
_REQUEST = struct.Struct("<BIIH")
_PING = struct.Struct("<BIQ")
_HELLO = struct.Struct("<BI4sHHIB")

#: A decoded frame other than Deliver: ``(type, fields...)``.
Control = Tuple[Any, ...]
Frame = Union[Message, Control]

pack_header = _HDR.pack
pack_u16 = _U16.pack


def hello(pid: int, name: str) -> bytes:
    """The Hello frame; ``name`` is cut to 255 bytes on a character boundary."""
    n = name.encode("utf-8", "replace")[:255].decode("utf-8", "ignore").encode("utf-8")
    return _HELLO.pack(HELLO, 13 + len(n), MAGIC, VERSION, 0, pid & 0xFFFFFFFF, len(n)) + n


def subscription(subscribe: bool, ack: int, names: Sequence[bytes]) -> bytes:
    """A Subscribe (or Unsubscribe) frame for encoded event ``names``."""
    parts = [struct.pack("<IH", ack, len(names))]
    for n in names:
        parts.append(_U16.pack(len(n)))
        parts.append(n)
    body = b"".join(parts)
    return _HDR.pack(SUBSCRIBE if subscribe else UNSUBSCRIBE, len(body)) + body


def publish(event: bytes, payload: bytes) -> bytes:
    """A Publish frame (the connection builds these in place for speed)."""
    return _HDR.pack(PUBLISH, 2 + len(event) + len(payload)) + _U16.pack(len(event)) + event + payload


def request(rid: int, event: bytes, arg: bytes) -> bytes:
    """A Request frame: control request ``event`` with a JSON argument."""
    return _REQUEST.pack(REQUEST, 6 + len(event) + len(arg), rid, len(event)) + event + arg


def ping(token: int, pong: bool = False) -> bytes:
    """A Ping frame (or the Pong answering one)."""
    return _PING.pack(PONG if pong else PING, 8, token & 0xFFFFFFFFFFFFFFFF)


def _varint(buf: bytes, at: int, end: int) -> Tuple[int, int]:
    v = 0
    for i in range(10):
        if at >= end:
            raise ProtocolError("malformed deliver frame: body too short")
        b = buf[at]
        at += 1
        v |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return v & 0xFFFFFFFFFFFFFFFF, at
    raise ProtocolError("malformed deliver frame: bad varint")


def _text(buf: bytes, a: int, b: int, what: str) -> str:
    try:
        return buf[a:b].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"malformed {what}: not UTF-8") from None


class Decoder:
    """Splits the daemon's byte stream into frames.

    ``feed`` takes each read and returns the frames it completed. Complete
    frames are decoded straight from the read's ``bytes``; only a frame cut
    by a read boundary is gathered (its pieces are joined once, so a large
    frame arriving in many reads is copied once).
    """

    def __init__(self, channel: str, node: int, max_body: int) -> None:
        self.channel = channel
        self.node = node
        self.max_body = max_body
        self._pieces: List[bytes] = []
        self._have = 0
        self._need = 0
        self._events: Dict[bytes, str] = {}

    @property
    def partial(self) -> int:
        """Bytes of an incomplete frame held."""
        return self._have

    def feed(self, data: bytes) -> List[Frame]:
        """Adds one read; returns the frames completed (possibly none)."""
        buf = self.gather(data)
        if buf is None:
            return []
        frames, used = self.decode(buf)
        self.keep(buf, used)
        return frames

    def gather(self, data: bytes) -> Optional[bytes]:
        """Adds one read: the bytes to decode now (the held start of a frame
        joined with the read once the frame is complete), or None while the
        held frame is still incomplete. Pair with :meth:`keep`."""
        if self._pieces:
            self._pieces.append(data)
            self._have += len(data)
            if self._have < self._need:
                return None
            data = b"".join(self._pieces)
            self._pieces = []
            self._have = 0
        return data

    def keep(self, buf: bytes, used: int) -> None:
        """Holds the bytes of ``buf`` after the first ``used`` (the start of
        an incomplete frame) until the next read."""
        left = len(buf) - used
        if left:
            rest = buf[used:] if used else buf
            self._pieces = [rest]
            self._have = left
            if left >= HEADER_LEN:
                self._need = HEADER_LEN + _U32.unpack_from(rest, 1)[0]
            else:
                self._need = HEADER_LEN

    def oversized(self, kind: int, blen: int) -> ProtocolError:
        """The error for a frame header announcing more than ``max_body``."""
        if kind not in _SERVER_KINDS:
            return ProtocolError(f"unknown frame type 0x{kind:02x} from the daemon")
        return ProtocolError(f"the daemon sent a frame of {blen} bytes, over the limit of {self.max_body}")

    def decode(self, buf: bytes) -> Tuple[List[Frame], int]:
        """Decodes the complete frames at the start of ``buf``; returns them
        and the number of bytes they took."""
        out: List[Frame] = []
        append = out.append
        n = len(buf)
        off = 0
        mv = memoryview(buf)
        events = self._events
        channel = self.channel
        node = self.node
        max_body = self.max_body
        unpack_header = _HDR.unpack_from
        new = object.__new__
        while n - off >= HEADER_LEN:
            kind, blen = unpack_header(buf, off)
            if blen > max_body:
                raise self.oversized(kind, blen)
            p = off + HEADER_LEN
            end = p + blen
            if end > n:
                break
            if kind == DELIVER:
                # The common case, a local message on our channel, client id
                # below 2^14 and seq below 2^28, decodes without a call:
                # varints unrolled (blen >= 9 keeps every read inside the body).
                if blen >= 9 and buf[p] == 0:
                    b = buf[p + 1]
                    if b < 0x80:
                        client = b
                        q = p + 2
                    else:
                        b1 = buf[p + 2]
                        if b1 >= 0x80:
                            append(self.deliver(buf, mv, p, end))
                            off = end
                            continue
                        client = (b & 0x7F) | (b1 << 7)
                        q = p + 3
                    b = buf[q]
                    if b < 0x80:
                        seq = b
                        q += 1
                    else:
                        b1 = buf[q + 1]
                        if b1 < 0x80:
                            seq = (b & 0x7F) | (b1 << 7)
                            q += 2
                        else:
                            b2 = buf[q + 2]
                            if b2 < 0x80:
                                seq = (b & 0x7F) | ((b1 & 0x7F) << 7) | (b2 << 14)
                                q += 3
                            else:
                                b3 = buf[q + 3]
                                if b3 >= 0x80:
                                    append(self.deliver(buf, mv, p, end))
                                    off = end
                                    continue
                                seq = (b & 0x7F) | ((b1 & 0x7F) << 7) | ((b2 & 0x7F) << 14) | (b3 << 21)
                                q += 4
                    e = q + 2 + (buf[q] | (buf[q + 1] << 8))
                    if e > end:
                        raise ProtocolError("malformed deliver frame: event past the end")
                    key = buf[q + 2 : e]
                    ev = events.get(key)
                    if ev is None:
                        ev = self.event(key)
                    # Built field by field: cheaper than a call to __init__.
                    m = new(Message)
                    m.event = ev
                    m.channel = channel
                    m.node = node
                    m.client = client
                    m.seq = seq
                    m.payload = mv[e:end]
                    append(m)
                else:
                    append(self.deliver(buf, mv, p, end))
            else:
                append(self.control(kind, buf, p, end))
            off = end
        return out, off

    def control(self, kind: int, buf: bytes, p: int, end: int) -> Control:
        """Decodes a complete frame other than Deliver, its body at ``buf[p:end]``."""
        blen = end - p
        if kind == PONG or kind == PING:
            if blen < 8:
                raise ProtocolError("malformed ping frame: body too short")
            return (kind, _U64.unpack_from(buf, p)[0])
        if kind == ACK:
            if blen < 4:
                raise ProtocolError("malformed ack frame: body too short")
            return (ACK, _U32.unpack_from(buf, p)[0])
        if kind == RESPONSE:
            if blen < 5 or buf[p + 4] > 1:
                raise ProtocolError("malformed response frame")
            return (RESPONSE, _U32.unpack_from(buf, p)[0], buf[p + 4] == 0, buf[p + 5 : end])
        if kind == ERROR:
            if blen < 7:
                raise ProtocolError("malformed error frame: body too short")
            code, rid, flags = _ERROR.unpack_from(buf, p)
            msg = buf[p + 7 : end].decode("utf-8", "replace")
            return (ERROR, code, rid, bool(flags & 1), msg)
        if kind == WELCOME:
            if blen < _WELCOME.size:
                raise ProtocolError("malformed welcome frame: body too short")
            version, _flags, wnode, wclient, maxm, clen = _WELCOME.unpack_from(buf, p)
            c = p + _WELCOME.size
            if c + clen > end:
                raise ProtocolError("malformed welcome frame: channel past the end")
            name = _text(buf, c, c + clen, "welcome frame")
            return (WELCOME, version, wnode, wclient, maxm, name)
        raise ProtocolError(f"unknown frame type 0x{kind:02x} from the daemon")

    def event(self, key: bytes) -> str:
        """The event name of encoded ``key`` (decoded once, then cached)."""
        ev = _text(key, 0, len(key), "deliver frame (event name)")
        if len(self._events) >= _EVENT_CACHE_MAX:
            self._events.clear()
        self._events[bytes(key)] = ev
        return ev

    def deliver(self, buf: bytes, mv: memoryview, p: int, end: int) -> Message:
        """Decodes any Deliver frame, its body at ``buf[p:end]`` (``mv`` views ``buf``)."""
        if p >= end:
            raise ProtocolError("malformed deliver frame: body too short")
        flags = buf[p]
        client, q = _varint(buf, p + 1, end)
        seq, q = _varint(buf, q, end)
        node: Optional[int] = None
        channel = self.channel
        if flags & _DELIVER_REMOTE:
            if q + 8 > end:
                raise ProtocolError("malformed deliver frame: body too short")
            node = _U64.unpack_from(buf, q)[0]
            q += 8
        if flags & _DELIVER_CHANNEL:
            if q >= end or q + 1 + buf[q] > end:
                raise ProtocolError("malformed deliver frame: channel past the end")
            channel = _text(buf, q + 1, q + 1 + buf[q], "deliver frame (channel)")
            q += 1 + buf[q]
        if q + 2 > end:
            raise ProtocolError("malformed deliver frame: body too short")
        e = q + 2 + (buf[q] | (buf[q + 1] << 8))
        if e > end:
            raise ProtocolError("malformed deliver frame: event past the end")
        key = buf[q + 2 : e]
        ev = self._events.get(key)
        if ev is None:
            ev = self.event(key)
        return Message(ev, channel, self.node if node is None else node, client, seq, mv[e:end])
