"""The asyncio face: :class:`Client` and :class:`Subscription`.

::

    from netcluster.aio import Client

    async with await Client.connect("A") as a:
        a.on("log", lambda msg: print(msg.origin, msg.data))   # returns a coroutine: await it
        await a.emit("log", {"level": "info"})
        async for msg in a.subscribe("metric"):
            ...

Handlers run on the event loop, inside the client's read loop: keep them
short (a coroutine function as handler is started as a task instead).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import threading
import weakref
from typing import Any, AsyncIterator, Callable, Dict, Generator, List, Optional, Tuple

from . import _frame
from ._core import CLOSED, CONNECTED, RECONNECTING, Connection, Options
from ._listeners import Sink, SubState, _Stop
from ._names import WILDCARD, encode_event_name
from .errors import DisconnectedError, TooLargeError
from .message import Message

__all__ = ["Client", "Subscription", "CONNECTED", "RECONNECTING", "CLOSED"]

#: Default bound of unsent output before ``emit`` waits, and of the
#: offline queue while reconnecting.
DEFAULT_MAX_PENDING = 4 * 1024 * 1024
#: Default number of messages a subscription buffers before the client
#: stops reading from the daemon.
DEFAULT_SUBSCRIPTION_CAPACITY = 1024
#: Default seconds to wait for a control answer, and for a handshake.
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 10.0

Handler = Callable[[Message], Any]
_pack_header = _frame.pack_header
_PUBLISH = _frame.PUBLISH


def _program_name() -> str:
    arg0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    base = os.path.splitext(os.path.basename(arg0))[0]
    return base or "python"


def _dumps(data: Any) -> bytes:
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except TypeError as e:
        raise TypeError(
            f"cannot serialize the data to JSON: {e} (use emit_bytes for raw payloads)"
        ) from None


class Client:
    """A connection to one channel of the local ``ncserver``.

    Create with ``await Client.connect(channel)``. Safe to use from one
    event loop; the blocking :class:`netcluster.Client` wraps it for
    threads.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        #: Per event: the encoded ``event_len u16 · event``, its length, and
        #: the last payload size with the frame start for it (header and
        #: name: one piece to append when the size repeats).
        self._heads: Dict[str, Tuple[bytes, int, int, bytes]] = {}
        # A client dropped without close() closes once garbage collected
        # (the event loop holds the connection, not this object).
        weakref.finalize(self, conn.drop)

    @classmethod
    async def connect(
        cls,
        channel: str,
        *,
        socket_dir: Optional[str] = None,
        name: Optional[str] = None,
        echo: bool = True,
        reconnect: bool = True,
        offline_queue: int = DEFAULT_MAX_PENDING,
        max_pending: int = DEFAULT_MAX_PENDING,
        subscription_capacity: int = DEFAULT_SUBSCRIPTION_CAPACITY,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> "Client":
        """Connects to ``channel``.

        Args:
            socket_dir: the directory of the channel sockets; default: the
                daemon's rule (``NETCLUSTER_SOCKET_DIR``, ``/var/run`` for
                root, ``$XDG_RUNTIME_DIR``, ``/tmp``). Unused on Windows.
            name: shown by the daemon's ``showchannel``; default: the program.
            echo: whether own emits also reach own listeners (the seed's
                behaviour). The daemon never sends a client its own messages.
            reconnect: reconnect (with backoff) when the daemon goes away,
                renewing the subscriptions; off, a lost connection is final.
            offline_queue: bytes of emits kept while reconnecting; beyond,
                ``emit`` raises :class:`DisconnectedError`.
            max_pending: bytes of unsent output after which ``emit`` waits.
            subscription_capacity: messages a subscription holds before the
                client stops reading from the daemon (nothing is dropped).
            request_timeout: seconds to wait for a control answer.
            connect_timeout: seconds for connecting and the handshake.

        Raises:
            NoSuchChannelError: nothing at the socket path (the message
                names it and the socket-directory rule).
            NotRunningError, PermissionDeniedError, RefusedError,
            HandshakeError, InvalidNameError.
        """
        opts = Options(
            name if name is not None else _program_name(),
            echo,
            reconnect,
            offline_queue,
            max_pending,
            subscription_capacity,
            request_timeout,
            connect_timeout,
        )
        return cls(await Connection.open(channel, socket_dir, opts))

    # --- properties ----------------------------------------------------------

    @property
    def channel(self) -> str:
        """The channel this client is connected to."""
        return self._conn.channel

    @property
    def path(self) -> str:
        """The socket (or pipe) path of the channel."""
        return self._conn.path

    @property
    def client_id(self) -> int:
        """The id the daemon gave this client (changes on reconnection)."""
        return self._conn.welcome.client

    @property
    def node_id(self) -> int:
        """The daemon's node id."""
        return self._conn.welcome.node

    @property
    def max_message(self) -> int:
        """The largest payload the daemon accepts."""
        return self._conn.welcome.max_message

    @property
    def state(self) -> str:
        """``"connected"``, ``"reconnecting"`` or ``"closed"``."""
        return self._conn.state

    @property
    def closed_reason(self) -> Optional[str]:
        """Why the client is closed for good, or None while open or reconnecting."""
        c = self._conn._closed
        return None if c is None else c.reason

    # --- emitting ------------------------------------------------------------

    def _head(self, event: str, n: int) -> Tuple[bytes, int, int, bytes]:
        """The cache entry of ``event`` for an ``n``-byte payload: its encoded
        name, and the frame's start (header and name) for ``n`` bytes."""
        entry = self._heads.get(event)
        if entry is None:
            name = encode_event_name(event)
            head = _frame.pack_u16(len(name)) + name
            hl = len(head)
            if len(self._heads) >= 4096:
                self._heads.clear()
        else:
            head, hl = entry[0], entry[1]
        entry = (head, hl, n, _pack_header(_PUBLISH, hl + n) + head)
        self._heads[event] = entry
        return entry

    async def emit(self, event: str, data: Any = None) -> None:
        """Emits ``event`` with ``data`` serialized as JSON.

        Returns once the message is queued for the daemon (``flush`` waits
        until the daemon handled it). Raises :class:`TooLargeError` over the
        daemon's ``maxmessage``, :class:`DisconnectedError` when closed (or
        reconnecting with a full offline queue), :class:`InvalidNameError`.
        """
        await self.emit_bytes(event, _dumps(data))

    async def emit_bytes(self, event: str, payload: Any) -> None:
        """Emits ``event`` with a raw payload (any bytes-like object)."""
        conn = self._conn
        n = len(payload)
        if n > conn.max_message:
            raise TooLargeError(n, conn.max_message)
        try:
            _, _, size, start = self._heads[event]
        except KeyError:
            size = -1
        if size != n:
            start = self._head(event, n)[3]
        while not conn.put(start, payload):
            await conn.wait_room()
        if conn.echo and conn.table.wants(event):
            self._echo(event, payload)

    def emit_nowait(self, event: str, data: Any = None) -> None:
        """Like :meth:`emit` without waiting for room in the output buffer:
        for handlers, which cannot await. Only ``max_pending`` is not
        enforced; the other errors are raised as by :meth:`emit`."""
        self.emit_bytes_nowait(event, _dumps(data))

    def emit_bytes_nowait(self, event: str, payload: Any) -> None:
        """Like :meth:`emit_bytes` without waiting (see :meth:`emit_nowait`)."""
        conn = self._conn
        n = len(payload)
        if n > conn.max_message:
            raise TooLargeError(n, conn.max_message)
        try:
            _, _, size, start = self._heads[event]
        except KeyError:
            size = -1
        if size != n:
            start = self._head(event, n)[3]
        conn.put(start, payload, wait_ok=False)
        if conn.opts.echo and conn.table.wants(event):
            self._echo(event, payload)

    def _echo(self, event: str, payload: Any) -> None:
        conn = self._conn
        seq = next(conn.echo_seq)
        body = memoryview(payload if isinstance(payload, bytes) else bytes(payload))
        msg = Message(event, conn.channel, conn.welcome.node, conn.welcome.client, seq, body)
        if conn.on_loop_thread():
            conn.on_frames([msg])
        else:
            frames: "List[_frame.Frame]" = [msg]
            conn.loop.call_soon_threadsafe(conn.on_frames, frames)

    async def flush(self) -> None:
        """Waits until the daemon has handled everything emitted so far (it
        has then queued those messages for their recipients). While
        reconnecting, waits for the new connection."""
        await self._conn.flush()

    # --- listening -----------------------------------------------------------

    def _sink(self, handler: Handler) -> Sink:
        if inspect.iscoroutinefunction(handler):
            loop = self._conn.loop

            def start(msg: Message) -> None:
                loop.create_task(handler(msg))

            return start
        return handler

    async def on(self, event: str, handler: Handler) -> int:
        """Calls ``handler(msg)`` for every message with this event (``*`` =
        every event of the channel); returns the listener id for
        :meth:`remove_listener`. Returns once the daemon has applied the
        subscription: a message emitted after that by anyone reaches it."""
        return await self._conn.add_listener(event, self._sink(handler), False)

    async def once(self, event: str, handler: Handler) -> int:
        """Like :meth:`on`, for the next matching message only."""
        return await self._conn.add_listener(event, self._sink(handler), True)

    def remove_listener(self, listener_id: int) -> bool:
        """Removes a listener; False if there was none with this id (already
        removed, or a ``once`` listener that fired)."""
        return self._conn.remove_listener(listener_id)

    def subscribe(self, event: str, *more: str) -> "Subscription":
        """A stream of the messages with these events (``*`` = all), in the
        order the daemon sent them::

            async for msg in client.subscribe("log"):   # or: sub = await client.subscribe("log")
                ...

        It unsubscribes when closed (``close()``, ``async with``) or garbage
        collected, e.g. after breaking out of the ``async for``.
        """
        return Subscription(self._conn, (event,) + more, threaded=False)

    # --- control -------------------------------------------------------------

    async def request(self, name: str, arg: Any = None, timeout: Optional[float] = None) -> Any:
        """Sends a control request (e.g. ``nc-control-showconfig``) and returns
        the daemon's JSON answer. Answered on the ``control`` channel only;
        a refusal raises :class:`RequestError` with the daemon's reason."""
        return await self._conn.request(name, arg, timeout)

    async def showconfig(self) -> Any:
        """The daemon's active configuration."""
        return await self.request("nc-control-showconfig")

    async def showchannel(self, channel: Optional[str] = None) -> Any:
        """The clients of ``channel``, or one summary per channel."""
        return await self.request("nc-control-showchannel", channel)

    async def showclient(self, channel: str, client: Any) -> Any:
        """One client of ``channel`` by id (or ``"{node}:{id}"``), also one that left recently."""
        return await self.request("nc-control-showclient", {"channel": channel, "client": client})

    async def showpeers(self) -> Any:
        """The other daemons on the network (fails when not connected to it)."""
        return await self.request("nc-control-showpeers")

    async def status(self) -> Any:
        """Version, node, start time, counts of channels, clients and disconnects."""
        return await self.request("nc-control-status")

    async def reloadconfig(self, config: Any = None) -> Any:
        """Reloads the config: a path (read by the daemon), a config object,
        or None for the file the daemon was started with."""
        return await self.request("nc-control-reloadconfig", config)

    # --- closing -------------------------------------------------------------

    async def disconnect(self) -> None:
        """Writes what is pending, then closes for good (idempotent)."""
        await self._conn.disconnect()

    close = disconnect

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()

    def __repr__(self) -> str:
        w = self._conn.welcome
        return f"<netcluster.aio.Client channel={self.channel!r} client={w.client} node={w.node:016x} {self.state}>"


class Subscription:
    """Messages of one or more events, as an async (or, from the blocking
    client, plain) iterator. Ends by raising :class:`DisconnectedError` when
    the connection is closed for good by the daemon's side, and
    ``StopAsyncIteration`` after the application closed it."""

    def __init__(self, conn: Connection, events: "tuple[str, ...]", threaded: bool) -> None:
        self._conn = conn
        state = SubState(conn.opts.subscription_capacity, threaded, conn.sub_pause)
        self._state = state
        names: List[str] = [WILDCARD] if WILDCARD in events else list(dict.fromkeys(events))
        self._acks: List["asyncio.Future[None]"] = []
        self._error: Optional[BaseException] = None
        self._names = names
        #: Acknowledgements not yet awaited.
        self._unacked = not threaded
        if not threaded:
            self._register(names)
        conn.add_sub(state)
        # Unsubscribe when the application drops the subscription (the
        # listener table holds the state, not this object).
        self._finalizer = weakref.finalize(self, conn.drop_sub_soon, state)

    def _register(self, names: List[str]) -> None:
        try:
            for name in names:
                lid, fut = self._conn.register(name, self._state.push, False)
                self._state.ids.append(lid)
                if fut is not None:
                    self._acks.append(fut)
        except BaseException:
            self._conn.drop_sub(self._state)
            raise

    async def _wait_acks(self) -> None:
        self._unacked = False
        try:
            for fut in self._acks:
                await fut
        except BaseException as e:
            self._error = e
            self.close()
            raise

    async def _start(self) -> None:
        """Registers on the loop thread (blocking face) and waits for the acks."""
        self._register(self._names)
        await self._wait_acks()

    async def _ready(self) -> "Subscription":
        if self._unacked:
            await self._wait_acks()
        elif self._error is not None:
            raise self._error
        return self

    def __await__(self) -> Generator[Any, None, "Subscription"]:
        return self._ready().__await__()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        if self._unacked:
            await self._wait_acks()
        state = self._state
        while True:
            if state.items:
                msg = state.items.popleft()
                if state.full:
                    state.took()
                return msg
            if state.ended is not None or not state.ids:
                if state.ended is None:
                    raise StopAsyncIteration
                try:
                    state.raise_end()
                except _Stop:
                    raise StopAsyncIteration from None
            fut = self._conn.loop.create_future()
            state.waiter = fut
            await fut

    def get_nowait(self) -> Optional[Message]:
        """The next message if one is waiting, else None."""
        state = self._state
        if state.items:
            msg = state.items.popleft()
            if state.full:
                state.took()
            return msg
        return None

    def close(self) -> None:
        """Unsubscribes; messages already queued can still be read."""
        if self._finalizer.detach() is not None:
            self._conn.drop_sub(self._state)

    async def __aenter__(self) -> "Subscription":
        await self
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
