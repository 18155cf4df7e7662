"""The blocking face: :class:`Client` for threads and scripts.

Each client runs the asyncio client on its own event loop in a background
thread (named ``netcluster-{channel}``); handlers run on that thread. Every
method may be called from any thread. ``emit`` appends to the output buffer
directly from the caller's thread and only waits for the background
thread when the buffer is full, so a loop of emits costs no thread switch
per message.

Inside a handler (on the client's own thread) ``emit``, ``emit_bytes`` and
``remove_listener`` work (emit does not wait for room there); methods that
must wait for the daemon (``on``, ``flush``, control requests, …) raise,
since the thread that would receive the answer is the one waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Coroutine, Iterator, Optional, TypeVar

from . import aio
from ._listeners import _Stop
from .errors import DisconnectedError, NetclusterError, TooLargeError
from .message import Message

T = TypeVar("T")


class Client:
    """A blocking, thread-safe connection to one channel.

    ``Client("A")`` or ``Client.connect("A")`` connects at once and takes
    the same keyword options as :meth:`netcluster.aio.Client.connect`. Use
    it as a context manager, or call :meth:`close`.
    """

    def __init__(self, channel: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"netcluster-{channel}", daemon=True)
        self._thread.start()
        ready.wait()

        async def connect() -> aio.Client:
            c = await aio.Client.connect(channel, **options)
            # Set on the loop thread before any other thread can emit.
            c._conn.shared = True
            return c

        try:
            self._aio: aio.Client = self._call(connect())
        except BaseException:
            self._stop_loop()
            raise
        self._conn = self._aio._conn

    @classmethod
    def connect(cls, channel: str, **options: Any) -> "Client":
        """Connects to ``channel`` (same options as the asyncio client)."""
        return cls(channel, **options)

    def _call(self, coro: "Coroutine[Any, Any, T]", what: str = "this call") -> T:
        if threading.get_ident() == self._thread.ident:
            coro.close()
            raise NetclusterError(
                f"{what} waits for the daemon and cannot run inside a handler, which runs on the "
                f"client's own thread; hand the work to another thread (emit and remove_listener work)"
            )
        if self._loop.is_closed():
            coro.close()
            raise DisconnectedError("disconnected by the application (the client is closed)")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            raise NetclusterError("the client's event loop stopped") from None

    # --- properties ----------------------------------------------------------

    @property
    def channel(self) -> str:
        """The channel this client is connected to."""
        return self._aio.channel

    @property
    def client_id(self) -> int:
        """The id the daemon gave this client (changes on reconnection)."""
        return self._aio.client_id

    @property
    def node_id(self) -> int:
        """The daemon's node id."""
        return self._aio.node_id

    @property
    def max_message(self) -> int:
        """The largest payload the daemon accepts."""
        return self._aio.max_message

    @property
    def state(self) -> str:
        """``"connected"``, ``"reconnecting"`` or ``"closed"``."""
        return self._aio.state

    @property
    def closed_reason(self) -> Optional[str]:
        """Why the client is closed for good, or None."""
        return self._aio.closed_reason

    # --- emitting ------------------------------------------------------------

    def emit(self, event: str, data: Any = None) -> None:
        """Emits ``event`` with ``data`` serialized as JSON."""
        self.emit_bytes(event, aio._dumps(data))

    def emit_bytes(self, event: str, payload: Any) -> None:
        """Emits ``event`` with a raw payload (any bytes-like object)."""
        a = self._aio
        conn = self._conn
        n = len(payload)
        if n > conn.max_message:
            raise TooLargeError(n, conn.max_message)
        try:
            _, _, size, start = a._heads[event]
        except KeyError:
            size = -1
        if size != n:
            start = a._head(event, n)[3]  # entries are replaced whole: safe across threads
        on_loop = threading.get_ident() == self._thread.ident
        while not conn.put(start, payload, wait_ok=not on_loop):
            self._call(conn.wait_room())
        if conn.echo and conn.table.wants(event):
            a._echo(event, payload)

    def flush(self) -> None:
        """Waits until the daemon has handled everything emitted so far."""
        self._call(self._aio.flush(), "flush()")

    # --- listening -----------------------------------------------------------

    def on(self, event: str, handler: aio.Handler) -> int:
        """Calls ``handler(msg)`` on the client's thread for every message
        with this event (``*`` = all); returns the listener id."""
        return self._call(self._aio.on(event, handler), "on()")

    def once(self, event: str, handler: aio.Handler) -> int:
        """Like :meth:`on`, for the next matching message only."""
        return self._call(self._aio.once(event, handler), "once()")

    def remove_listener(self, listener_id: int) -> bool:
        """Removes a listener; False if there was none with this id."""
        return self._aio.remove_listener(listener_id)

    def subscribe(self, event: str, *more: str) -> "Subscription":
        """An iterator over the messages with these events (``*`` = all)::

            with client.subscribe("log") as sub:
                for msg in sub:
                    ...
                msg = sub.get(timeout=1.0)
        """
        sub = aio.Subscription(self._conn, (event,) + more, threaded=True)
        self._call(sub._start(), "subscribe()")
        return Subscription(sub)

    # --- control -------------------------------------------------------------

    def request(self, name: str, arg: Any = None, timeout: Optional[float] = None) -> Any:
        """Sends a control request and returns the daemon's JSON answer."""
        return self._call(self._aio.request(name, arg, timeout), "request()")

    def showconfig(self) -> Any:
        """The daemon's active configuration."""
        return self._call(self._aio.showconfig(), "showconfig()")

    def showchannel(self, channel: Optional[str] = None) -> Any:
        """The clients of ``channel``, or one summary per channel."""
        return self._call(self._aio.showchannel(channel), "showchannel()")

    def showclient(self, channel: str, client: Any) -> Any:
        """One client of ``channel`` by id."""
        return self._call(self._aio.showclient(channel, client), "showclient()")

    def showpeers(self) -> Any:
        """The other daemons on the network."""
        return self._call(self._aio.showpeers(), "showpeers()")

    def status(self) -> Any:
        """The daemon's status."""
        return self._call(self._aio.status(), "status()")

    def reloadconfig(self, config: Any = None) -> Any:
        """Reloads the config (a path, a config object, or None)."""
        return self._call(self._aio.reloadconfig(config), "reloadconfig()")

    # --- closing -------------------------------------------------------------

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.get_ident() != self._thread.ident:
            self._thread.join()
            self._loop.close()

    def close(self) -> None:
        """Writes what is pending, closes the connection and stops the
        client's thread. Idempotent; from a handler, closes without waiting."""
        if self._loop.is_closed():
            return
        if threading.get_ident() == self._thread.ident:
            self._loop.create_task(self._aio.disconnect())
            return
        try:
            self._call(self._aio.disconnect())
        finally:
            self._stop_loop()

    disconnect = close

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<netcluster.Client channel={self.channel!r} client={self.client_id} {self.state}>"


class Subscription:
    """Messages of one or more events for a blocking client (iterate, or
    :meth:`get`). Iteration ends when the application closes the client;
    a connection closed by the daemon raises :class:`DisconnectedError`."""

    def __init__(self, inner: aio.Subscription) -> None:
        self._inner = inner
        self._state = inner._state

    def get(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next message; None after ``timeout`` seconds or once the
        subscription ended normally."""
        state = self._state
        cond = state.cond
        assert cond is not None
        with cond:
            if not state.items and state.ended is None and state.ids:
                cond.wait_for(
                    lambda: bool(state.items) or state.ended is not None or not state.ids, timeout
                )
            if state.items:
                msg = state.items.popleft()
            else:
                if state.ended is not None:
                    try:
                        state.raise_end()
                    except _Stop:
                        return None
                return None
        if state.full:
            state.took()
        return msg

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self.get()
            if msg is None:
                return
            yield msg

    def close(self) -> None:
        """Unsubscribes; messages already queued can still be read."""
        self._inner.close()
        cond = self._state.cond
        if cond is not None:
            with cond:
                cond.notify_all()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
