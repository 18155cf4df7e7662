"""The receive path: one read from the daemon decoded and dispatched in one loop.

Between the codec (``_frame``) and the connection (``_core``): each Deliver
frame of a read becomes a :class:`~netcluster.message.Message` handed to
its listeners at once, in the same loop that decodes it, instead of first
collecting the read's frames in a list. That saves a second loop, and,
more, keeps every message short-lived: a list of thousands of live
messages per read makes the garbage collector walk them again and again.

The listeners of the last event are looked up once and reused for as long
as the listener table is the same object (the table swaps in a new mapping
on every change, so a handler adding or removing listeners mid-read is
seen by the next message). Two shortcuts for runs, both keyed on bytes
and checked in place: an event name equal to the previous frame's, and,
once two frames in a row had the same size, a frame starting with the
previous frame's header, flags and client id. Other frames go to the
connection's ``control`` callback in stream order.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, Callable, Optional, Tuple

from . import _frame
from ._listeners import Entry, Table
from .errors import ProtocolError
from .message import Message

log = logging.getLogger("netcluster")

_HDR = struct.Struct("<BI")
_DELIVER = _frame.DELIVER
_HEADER_LEN = _frame.HEADER_LEN

Handler = Callable[[Message], Any]


def _nobody(_msg: Message) -> None:
    """The handler of an event nobody listens to (any more)."""


class Receiver:
    """Decodes the reads of one socket and dispatches their frames."""

    def __init__(
        self,
        decoder: _frame.Decoder,
        table: Table,
        control: Callable[[_frame.Control], None],
        remove_listener: Callable[[int], bool],
        channel: str,
    ) -> None:
        self.decoder = decoder
        self.table = table
        self.control = control
        self.remove_listener = remove_listener
        self.channel = channel

    def handler(self, event: str) -> Handler:
        """What to call for a message of ``event`` given the current table:
        the listener's own function when there is exactly one that is not
        ``once`` (the common case: no wrapper), else a fan-out."""
        table = self.table
        entries = table.by_event.get(event, table.all)
        if not entries:
            return _nobody
        if len(entries) == 1 and not entries[0].once:
            return entries[0].sink

        def fan_out(msg: Message) -> None:
            self.deliver(entries, msg)

        return fan_out

    def deliver(self, entries: Tuple[Entry, ...], msg: Message) -> None:
        """Hands ``msg`` to ``entries`` in order: a ``once`` listener fires
        once and is removed; one that raises is logged, the others run."""
        for e in entries:
            if e.once:
                if e.fired:
                    continue
                e.fired = True
                self.remove_listener(e.id)
            try:
                e.sink(msg)
            except Exception:
                self.raised(e.event)

    def raised(self, event: str) -> None:
        log.exception("netcluster: listener for %r on channel %r raised", event, self.channel)

    def dispatch(self, msg: Message) -> None:
        """Dispatches one message decoded elsewhere (own echoes, early frames)."""
        try:
            self.handler(msg.event)(msg)
        except Exception:
            self.raised(msg.event)

    def feed(self, data: bytes) -> None:
        """Decodes one read and dispatches every frame it completes.

        Raises :class:`ProtocolError` on bad bytes (after dispatching the
        good frames before them); the connection then ends.
        """
        dec = self.decoder
        buf = dec.gather(data)
        if buf is None:
            return
        table = self.table
        n = len(buf)
        off = 0
        mv = memoryview(buf)
        events = dec._events
        channel = dec.channel
        node = dec.node
        max_body = dec.max_body
        unpack_header = _HDR.unpack_from
        new = object.__new__
        # The last event's encoded name (length prefix included), its
        # decoded name, the table it was resolved in and its handler. The
        # empty name is a correct start: it decodes to "".
        head = b"\x00\x00"
        hl = 2
        ev = ""
        seen: Optional[Any] = None
        h: Handler = _nobody
        # The header, flags and client bytes of the last fast-path frame,
        # once two frames in a row had the same size: a frame starting with
        # the same bytes (a run from one emitter with one payload size)
        # skips decoding them. Empty (off) while sizes vary.
        pre = b""
        size = 0
        pl = 0
        pclient = 0
        limit = n - _HEADER_LEN
        try:
            while off <= limit:
                if pre and buf.startswith(pre, off):
                    end = off + size
                    if end > n:
                        break
                    q = off + pl
                    client = pclient
                else:
                    kind, blen = unpack_header(buf, off)
                    if blen > max_body:
                        raise dec.oversized(kind, blen)
                    p = off + _HEADER_LEN
                    end = p + blen
                    if end > n:
                        break
                    if kind != _DELIVER:
                        f = dec.control(kind, buf, p, end)
                        off = end
                        self.control(f)
                        continue
                    if blen < 9 or buf[p] != 0:
                        off = end
                        self.dispatch(dec.deliver(buf, mv, p, end))
                        continue
                    # A local message on our channel, client id below 2^14
                    # and seq below 2^28: varints unrolled (blen >= 9 keeps
                    # every read inside the body), no call.
                    b = buf[p + 1]
                    if b < 0x80:
                        client = b
                        q = p + 2
                    else:
                        b1 = buf[p + 2]
                        if b1 >= 0x80:
                            off = end
                            self.dispatch(dec.deliver(buf, mv, p, end))
                            continue
                        client = (b & 0x7F) | (b1 << 7)
                        q = p + 3
                    if end - off == size:
                        pre = buf[off:q]
                        pl = q - off
                        pclient = client
                    else:
                        size = end - off
                        pre = b""
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
                                p = off + _HEADER_LEN
                                off = end
                                self.dispatch(dec.deliver(buf, mv, p, end))
                                continue
                            seq = (b & 0x7F) | ((b1 & 0x7F) << 7) | ((b2 & 0x7F) << 14) | (b3 << 21)
                            q += 4
                if buf.startswith(head, q, end):
                    e = q + hl
                else:
                    e = q + 2 + (buf[q] | (buf[q + 1] << 8))
                    if e > end:
                        raise ProtocolError("malformed deliver frame: event past the end")
                    key = buf[q + 2 : e]
                    ev = events.get(key) or dec.event(key)
                    head = buf[q:e]
                    hl = e - q
                    seen = None
                if table.by_event is not seen:
                    seen = table.by_event
                    h = self.handler(ev)
                # Built field by field: cheaper than a call to __init__.
                m = new(Message)
                m.event = ev
                m.channel = channel
                m.node = node
                m.client = client
                m.seq = seq
                m.payload = mv[e:end]
                off = end
                try:
                    h(m)
                except Exception:
                    self.raised(ev)
        finally:
            # Also when a handler raised BaseException: the start of an
            # incomplete frame must wait for the next read.
            dec.keep(buf, off)
