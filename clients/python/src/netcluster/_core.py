"""The connection shared by both faces: dispatch, answers, and
reconnection, over the output buffer of ``_output``.

Each read from the socket's ``Link`` is decoded and dispatched by a
``Receiver`` (``_receive``): Deliver messages go to their listeners as they
are decoded, other frames come back here (``_answer``) to complete the
futures of ``flush``, subscriptions and control requests.

When the socket breaks, waiting operations fail, and unless reconnecting
is off or the daemon refused us for good, the connection dials again with
backoff, renews the listeners' subscriptions, then sends what was emitted
meanwhile (up to ``offline_queue`` bytes). Bytes already handed to the
broken socket may be lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import threading
from typing import Any, Dict, List, Optional, Set, Tuple

from . import _frame
from ._listeners import Entry, Sink, SubState, Table
from ._names import channel_path, check_channel, encode_subscription_name
from ._output import Output
from ._receive import Receiver
from ._transport import Link, Welcome, dial
from .errors import (
    ConnectError,
    DisconnectedError,
    ErrorCode,
    RequestError,
    RequestTimeoutError,
    SubscribeRefusedError,
)
from .message import Message

log = logging.getLogger("netcluster")

CONNECTED = "connected"
RECONNECTING = "reconnecting"
CLOSED = "closed"

#: First and longest pause between reconnection attempts (seconds).
BACKOFF_MIN = 0.02
BACKOFF_MAX = 1.0
#: Event names per Subscribe frame when renewing (the count is a u16).
_NAMES_PER_FRAME = 4096
#: Codes after which reconnecting cannot help.
_PERMANENT = (ErrorCode.DENIED, ErrorCode.CHANNEL_REMOVED, ErrorCode.UNSUPPORTED_VERSION)
_APP_CLOSE = "disconnected by the application"


class Options:
    """Connection options (see the faces' ``connect`` for their meaning)."""

    def __init__(
        self,
        name: str,
        echo: bool,
        reconnect: bool,
        offline_queue: int,
        max_pending: int,
        subscription_capacity: int,
        request_timeout: float,
        connect_timeout: float,
    ) -> None:
        self.name = name
        self.echo = echo
        self.reconnect = reconnect
        self.offline_queue = offline_queue
        self.max_pending = max(1, max_pending)
        self.subscription_capacity = max(1, subscription_capacity)
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout


def subscribe_frames(subscribe: bool, ack: int, events: List[str]) -> bytes:
    """Subscribe frames for any number of events (one ack on the last)."""
    names = [e.encode("utf-8") for e in events]
    parts = []
    for i in range(0, len(names), _NAMES_PER_FRAME):
        last = i + _NAMES_PER_FRAME >= len(names)
        parts.append(_frame.subscription(subscribe, ack if last else 0, names[i : i + _NAMES_PER_FRAME]))
    return b"".join(parts)


class Connection(Output):
    """One client's connection to one channel, across reconnections."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        channel: str,
        path: str,
        why: str,
        opts: Options,
        link: Link,
        welcome: Welcome,
    ) -> None:
        self.channel = channel
        self.path = path
        self.why = why
        self.opts = opts
        self.echo = opts.echo
        self.max_message = welcome.max_message
        self.table = Table()
        self.state = CONNECTED
        #: Sequence numbers of own messages echoed to own listeners (next()
        #: on a count is atomic, emits may come from several threads).
        self.echo_seq = itertools.count(1)
        Output.__init__(self, loop, opts.offline_queue, opts.max_pending)
        self._next_id = 0
        self._next_listener = 0
        self._requests: Dict[int, "asyncio.Future[Tuple[bool, bytes]]"] = {}
        self._acks: Dict[int, "asyncio.Future[None]"] = {}
        self._pings: Dict[int, "asyncio.Future[None]"] = {}
        self._subs: Set[SubState] = set()
        self._full = 0
        self._done = asyncio.Event()
        self._redial: Optional["asyncio.Task[None]"] = None
        self.receiver: Receiver
        self.welcome = welcome
        self._attach(link, welcome)

    @classmethod
    async def open(cls, channel: str, socket_dir: Optional[str], opts: Options) -> "Connection":
        """Connects and shakes hands."""
        check_channel(channel)
        path, why = channel_path(channel, socket_dir)
        link, welcome = await dial(channel, path, why, opts.name, opts.connect_timeout)
        return cls(asyncio.get_running_loop(), channel, path, why, opts, link, welcome)

    # --- state -------------------------------------------------------------

    def _attach(self, link: Link, welcome: Welcome) -> None:
        self.link = link
        self.welcome = welcome
        self.max_message = welcome.max_message
        self.writable = True
        link.sink = self
        self.receiver = Receiver(link.decoder, self.table, self._answer, self.remove_listener, self.channel)
        if self._full and link.transport is not None:
            link.transport.pause_reading()
        early, link.early = link.early, []
        if early:
            self.on_frames(early)
        link.receive = self.receiver.feed

    def not_connected(self) -> Optional[DisconnectedError]:
        """Why the client cannot talk to the daemon now, if it cannot."""
        if self._closed is not None:
            return self._closed
        if self._stop is not None:
            return DisconnectedError(self._stop)
        if self._offline is not None:
            return DisconnectedError(f"reconnecting to the daemon ({self._offline})")
        return None

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread

    def next_id(self) -> int:
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        return self._next_id

    # --- input -------------------------------------------------------------

    def on_frames(self, frames: List[_frame.Frame]) -> None:
        """Dispatches frames decoded elsewhere: those that came with the
        Welcome, and own messages echoed to own listeners. (Reads from the
        socket go through ``self.receiver``.)"""
        for f in frames:
            if isinstance(f, Message):
                self.receiver.dispatch(f)
            else:
                self._answer(f)

    def _answer(self, f: Tuple[Any, ...]) -> None:
        kind = f[0]
        if kind == _frame.PONG:
            fut = self._pings.pop(f[1], None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == _frame.ACK:
            ack = self._acks.pop(f[1], None)
            if ack is not None and not ack.done():
                ack.set_result(None)
        elif kind == _frame.RESPONSE:
            req = self._requests.pop(f[1], None)
            if req is not None and not req.done():
                req.set_result((f[2], f[3]))
        elif kind == _frame.PING:
            try:
                self.put(_frame.ping(f[1], pong=True), wait_ok=False)
            except DisconnectedError:
                pass
        elif kind == _frame.ERROR:
            _, code, rid, fatal, message = f
            link = self.link
            if fatal and link is not None:
                link.end_reason = message
                link.end_code = code
                if link.transport is not None:
                    link.transport.abort()
                return
            ack = self._acks.pop(rid, None) if rid else None
            if ack is not None:
                if not ack.done():
                    ack.set_exception(SubscribeRefusedError(f"the server refused the subscription: {message}"))
                return
            req = self._requests.pop(rid, None) if rid else None
            if req is not None:
                if not req.done():
                    req.set_exception(RequestError(message))
                return
            log.warning("netcluster: the daemon reported on channel %r: %s", self.channel, message)
        else:
            # A second Welcome: the daemon is not speaking the protocol.
            link = self.link
            if link is not None:
                link.end_reason = f"unexpected frame from the daemon (type 0x{kind:02x})"
                if link.transport is not None:
                    link.transport.abort()

    def sub_pause(self, state: SubState, on: bool) -> None:
        """A subscription filled up (``on``) or drained: stop or resume
        reading from the daemon. Any thread."""
        if threading.get_ident() != self.thread:
            try:
                self.loop.call_soon_threadsafe(self.sub_pause, state, on)
            except RuntimeError:
                pass
            return
        was = self._full
        self._full += 1 if on else -1
        link = self.link
        if link is None or link.lost or link.transport is None:
            return
        if was == 0 and self._full > 0:
            link.transport.pause_reading()
        elif was > 0 and self._full == 0:
            link.transport.resume_reading()

    # --- ending and reconnecting --------------------------------------------

    def on_lost(self, link: Link) -> None:
        if link is not self.link:
            return
        self.link = None
        reason = link.end_reason or "the daemon closed the connection"
        code = link.end_code
        if self._closing:
            self._finish(_APP_CLOSE)
            return
        if self._closed is not None:
            return
        if (code in _PERMANENT) or not self.opts.reconnect:
            self._finish(reason, code)
            return
        log.info("netcluster: connection to channel %r lost (%s); reconnecting", self.channel, reason)
        with self._lock:
            self._offline = reason
            self._set_plain()
        self.state = RECONNECTING
        self._fail_pending(DisconnectedError(f"reconnecting to the daemon ({reason})", code))
        self._wake_room()
        self._redial = self.loop.create_task(self._reconnect())

    def _fail_pending(self, err: DisconnectedError) -> None:
        maps: "List[Dict[int, asyncio.Future[Any]]]" = [self._requests, self._acks, self._pings]
        for d in maps:
            items = list(d.values())
            d.clear()
            for fut in items:
                if not fut.done():
                    fut.set_exception(err)

    def _finish(self, reason: str, code: Optional[int] = None) -> None:
        """Closes for good: every operation fails from now on with ``reason``."""
        if self._closed is not None:
            return
        err = DisconnectedError(reason, code)
        with self._lock:
            self._closed = err
            self._stop = reason
            self._out = bytearray()
            self._set_plain()
        self.state = CLOSED
        self._fail_pending(err)
        self.table.clear()
        for s in list(self._subs):
            s.end(err)
        self._wake_room()
        link = self.link
        if link is not None and not link.lost and link.transport is not None:
            link.transport.abort()
        if self._redial is not None and self._redial is not asyncio.current_task():
            self._redial.cancel()
        self._done.set()

    async def _reconnect(self) -> None:
        pause = BACKOFF_MIN
        while self._closed is None:
            if self._closing:
                self._finish(_APP_CLOSE + " while reconnecting")
                return
            try:
                link, welcome = await dial(
                    self.channel, self.path, self.why, self.opts.name, self.opts.connect_timeout
                )
            except (ConnectError, OSError) as e:
                log.debug("netcluster: reconnect to %r failed: %s", self.channel, e)
            else:
                if self._closed is not None or self._closing:
                    if link.transport is not None:
                        link.transport.close()
                    self._finish(_APP_CLOSE + " while reconnecting")
                    return
                events = self.table.events()
                with self._lock:
                    queued = self._out
                    self._out = bytearray(subscribe_frames(True, 0, events) if events else b"")
                    self._out += queued
                    self._offline = None
                    self._set_plain()
                self._attach(link, welcome)
                self.state = CONNECTED
                log.info("netcluster: reconnected to channel %r as client %d", self.channel, welcome.client)
                if link.lost:
                    self.on_lost(link)
                    return
                self._write()
                self._wake_room()
                return
            jitter = pause * 0.25 * ((os.getpid() % 97) / 97.0)
            await asyncio.sleep(pause + jitter)
            pause = min(pause * 2, BACKOFF_MAX)

    def drop(self) -> None:
        """The client object was garbage collected without being closed:
        write what is pending, then close, without waiting. Any thread; the
        work is always deferred to the loop (the collector may run in the
        middle of this connection's own code)."""
        if self._closed is not None or self._closing:
            return
        try:
            self.loop.call_soon_threadsafe(self._drop_now)
        except RuntimeError:
            pass  # the event loop is closed: its sockets went with it

    def _drop_now(self) -> None:
        if self._closed is not None or self._closing:
            return
        with self._lock:
            self._closing = True
            if self._stop is None:
                self._stop = "the client was garbage collected without being closed"
            self._set_plain()
        if self.link is None or self.state != CONNECTED:
            self._finish(_APP_CLOSE)
        else:
            self._write()  # closes the socket once the output is written

    async def disconnect(self) -> None:
        """Writes what is pending, then closes for good. Idempotent."""
        with self._lock:
            if self._closed is not None:
                return
            already = self._closing
            self._closing = True
            if self._stop is None:
                self._stop = "the client is disconnecting"
            self._set_plain()
        if self.link is None or self.state != CONNECTED:
            self._finish(_APP_CLOSE)
            return
        if not already:
            self._write()
        try:
            await asyncio.wait_for(self._done.wait(), self.opts.connect_timeout)
        except asyncio.TimeoutError:
            self._finish(_APP_CLOSE + " (the daemon did not take the last bytes in time)")

    # --- listeners, barriers, requests ---------------------------------------

    def register(self, event: str, sink: Sink, once: bool) -> Tuple[int, Optional["asyncio.Future[None]"]]:
        """Adds a listener (loop thread); returns its id and, if the daemon
        must be told, the future of its acknowledgement."""
        name = encode_subscription_name(event)
        err = self.not_connected()
        if self._closed is not None or self._stop is not None:
            assert err is not None
            raise err
        self._next_listener += 1
        lid = self._next_listener
        first = self.table.add(Entry(lid, event, sink, once))
        if not first or self.state != CONNECTED:
            return lid, None
        ack = self.next_id()
        fut: "asyncio.Future[None]" = self.loop.create_future()
        self._acks[ack] = fut
        try:
            self.put(_frame.subscription(True, ack, [name]), wait_ok=False)
        except DisconnectedError:
            self._acks.pop(ack, None)
            self.remove_listener(lid)
            raise
        return lid, fut

    async def add_listener(self, event: str, sink: Sink, once: bool) -> int:
        lid, fut = self.register(event, sink, once)
        if fut is not None:
            try:
                await fut
            except BaseException:
                self.remove_listener(lid)
                raise
        return lid

    def remove_listener(self, lid: int) -> bool:
        """Removes a listener, unsubscribing at the daemon if it was the
        last for its event. Any thread."""
        found = self.table.remove(lid)
        if found is None:
            return False
        event, last = found
        if last and self._stop is None:
            try:
                self.put(_frame.subscription(False, 0, [event.encode("utf-8")]), wait_ok=False)
            except DisconnectedError:
                pass
        return True

    def add_sub(self, state: SubState) -> None:
        self._subs.add(state)

    def drop_sub_soon(self, state: SubState) -> None:
        """``drop_sub`` for a subscription garbage collected without being
        closed: deferred to the loop, since the collector may run on any
        thread, also inside this connection's own code holding a lock."""
        try:
            self.loop.call_soon_threadsafe(self.drop_sub, state)
        except RuntimeError:
            pass  # the event loop is closed: nothing to unsubscribe from

    def drop_sub(self, state: SubState) -> None:
        """Removes a subscription's listeners (any thread)."""
        if self.loop.is_closed():
            return
        self._subs.discard(state)
        for lid in state.ids:
            self.remove_listener(lid)
        state.ids = []
        if state.full:
            state.full = False
            self.sub_pause(state, False)

    async def flush(self) -> None:
        """Waits until the daemon has handled everything emitted so far."""
        err = self.not_connected()
        if err is not None and self._offline is None:
            raise err
        token = self.next_id()
        fut: "asyncio.Future[None]" = self.loop.create_future()
        self._pings[token] = fut
        await self.send(_frame.ping(token))
        await fut

    async def request(self, name: str, arg: Any, timeout: Optional[float]) -> Any:
        event = encode_subscription_name(name)
        err = self.not_connected()
        if err is not None:
            raise err
        body = json.dumps(arg, separators=(",", ":")).encode("utf-8")
        rid = self.next_id()
        fut: "asyncio.Future[Tuple[bool, bytes]]" = self.loop.create_future()
        self._requests[rid] = fut
        await self.send(_frame.request(rid, event, body))
        t = self.opts.request_timeout if timeout is None else timeout
        try:
            ok, payload = await asyncio.wait_for(fut, t)
        except asyncio.TimeoutError:
            self._requests.pop(rid, None)
            raise RequestTimeoutError(f"no answer to {name} from the server within {t} s") from None
        try:
            value = json.loads(payload.decode("utf-8"))
        except ValueError as e:
            raise RequestError(f"the server's answer to {name} is not valid JSON: {e}") from None
        if ok:
            return value
        if isinstance(value, dict) and isinstance(value.get("error"), str):
            raise RequestError(value["error"])
        raise RequestError(json.dumps(value))
