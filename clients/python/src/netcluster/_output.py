"""The output side of a connection: one buffer of frames for the daemon.

Emitters append frames to one output buffer and schedule a write only
when none is pending, so a burst of emits leaves in few writes; past
``WRITE_EARLY`` bytes an emit on the loop thread writes at once. The
asyncio face appends without a lock (only the loop thread touches the
buffer; other threads' appends are handed to it); the blocking face, which
emits from the caller's thread, marks the connection ``shared`` and every
append takes a short lock. Also the state flags every emit checks: closed,
closing, offline (reconnecting).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, List, Optional

from ._transport import Link
from .errors import DisconnectedError

#: Output bytes after which an emit on the loop thread writes at once
#: instead of waiting for its scheduled write: a coroutine emitting a burst
#: without ever suspending would otherwise only start sending once it hits
#: ``max_pending``, leaving the daemon and the receivers idle meanwhile.
WRITE_EARLY = 64 * 1024


class Output:
    """The output buffer and the state flags guarding it (a base of
    ``_core.Connection``, which drives the state)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, offline_queue: int, max_pending: int) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        #: Set by the blocking face: other threads emit, so ``put`` locks.
        self.shared = False
        #: Guards the output buffer and the state flags below when shared.
        self._lock = threading.Lock()
        self._out = bytearray()
        self._scheduled = False
        #: Set (with the reason) once closed or closing: emits fail.
        self._stop: Optional[str] = None
        self._closed: Optional[DisconnectedError] = None
        self._closing = False
        self._offline: Optional[str] = None
        self._plain = True
        self._max_pending = max_pending
        self._offline_queue = offline_queue
        self._room: List["asyncio.Future[None]"] = []
        self.link: Optional[Link] = None
        self.writable = True

    def put(self, a: bytes, b: bytes = b"", c: Any = b"", wait_ok: bool = True) -> bool:
        """Appends a frame given in up to three parts. False when the
        caller must wait for room (``wait_room``) and try again."""
        if self.shared:
            return self._put_shared(a, b, c, wait_ok)
        if threading.get_ident() != self.thread:
            return self._put_from_elsewhere(a, b, c)
        # The asyncio face alone: only the loop thread touches the buffer,
        # so no lock (taking it was a quarter of an emit's cost).
        out = self._out
        # One test for the common case: open, online, room (emits call
        # this once per message).
        if self._plain and (len(out) < self._max_pending or not wait_ok):
            out += a
            out += b
            out += c
        elif not self._put_abnormal(a, b, c, wait_ok):
            return False
        if self._scheduled:
            if len(out) >= WRITE_EARLY and self.writable:
                self._write()
            return True
        self._scheduled = True
        try:
            self.loop.call_soon(self._write)
        except RuntimeError:
            pass  # the event loop is closed: nothing will be written any more
        return True

    def _put_from_elsewhere(self, a: bytes, b: bytes, c: Any) -> bool:
        """``put`` on an unshared connection from another thread (e.g. a
        subscription garbage collected there unsubscribing): appended on the
        loop thread, in order, without waiting for room."""
        if self._stop is not None:
            raise self._closed or DisconnectedError(self._stop)

        def later() -> None:
            try:
                self.put(a, b, c, wait_ok=False)
            except DisconnectedError:
                pass

        try:
            self.loop.call_soon_threadsafe(later)
        except RuntimeError:
            pass
        return True

    def _put_shared(self, a: bytes, b: bytes, c: Any, wait_ok: bool) -> bool:
        """``put`` when the blocking face shares the connection with other
        threads: the buffer is locked."""
        with self._lock:
            out = self._out
            if self._plain and (len(out) < self._max_pending or not wait_ok):
                out += a
                out += b
                out += c
            elif not self._put_abnormal(a, b, c, wait_ok):
                return False
            if self._scheduled:
                if len(out) < WRITE_EARLY or not self.writable:
                    return True
                early = True
            else:
                self._scheduled = True
                early = False
        if early:
            if threading.get_ident() == self.thread:
                self._write()
            return True
        try:
            if threading.get_ident() == self.thread:
                self.loop.call_soon(self._write)
            else:
                self.loop.call_soon_threadsafe(self._write)
        except RuntimeError:
            pass  # the event loop is closed: nothing will be written any more
        return True

    def _put_abnormal(self, a: bytes, b: bytes, c: Any, wait_ok: bool) -> bool:
        """``put`` when closed, closing, offline or full (lock held if shared)."""
        if self._stop is not None:
            raise self._closed or DisconnectedError(self._stop)
        out = self._out
        if self._offline is not None:
            if len(out) >= self._offline_queue:
                raise DisconnectedError(
                    f"reconnecting to the daemon ({self._offline}) and the offline queue is "
                    f"full ({self._offline_queue} bytes)"
                )
        elif wait_ok and len(out) >= self._max_pending:
            return False
        out += a
        out += b
        out += c
        return True

    def _set_plain(self) -> None:
        """Recomputes the fast-path flag of ``put`` (lock held)."""
        self._plain = self._stop is None and self._offline is None

    async def wait_room(self) -> None:
        """Waits until the output buffer is below ``max_pending`` (or the
        state changed, which the next ``put`` reports)."""
        while True:
            with self._lock:
                if (
                    len(self._out) < self._max_pending
                    or self._stop is not None
                    or self._offline is not None
                ):
                    return
                fut = self.loop.create_future()
                self._room.append(fut)
            await fut

    def _wake_room(self) -> None:
        room, self._room = self._room, []
        for f in room:
            if not f.done():
                f.set_result(None)

    async def send(self, frame: bytes) -> None:
        """Appends a frame, waiting for room."""
        while not self.put(frame):
            await self.wait_room()

    def _write(self) -> None:
        with self._lock:
            self._scheduled = False
            link = self.link
            if link is None or link.lost or not self.writable or self._offline is not None:
                return
            data = self._out
            if data:
                self._out = bytearray()
        transport = link.transport
        assert transport is not None
        if data:
            transport.write(data)
            if self._room:
                self._wake_room()
        if self._closing and not self._out:
            transport.close()

    def on_writable(self, link: Link, on: bool) -> None:
        if link is self.link:
            self.writable = on
            if on:
                self._write()
