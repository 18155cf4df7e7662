"""Opening a channel's socket and shaking hands with the daemon.

One asyncio :class:`Protocol` per socket: during the handshake it waits for
the daemon's Welcome; afterwards it hands every read to its connection's
receiver (``_receive``, which decodes and dispatches it) and reports how
the socket ended. Unix sockets everywhere but Windows, where channels are
named pipes (reachable through the Proactor event loop's pipe support).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Callable, List, Optional, Tuple

from . import _frame
from ._frame import Frame
from ._names import SOCKET_DIR_RULE
from .errors import (
    ConnectError,
    HandshakeError,
    NoSuchChannelError,
    NotRunningError,
    PermissionDeniedError,
    ProtocolError,
    RefusedError,
)
from .message import Message

#: Bytes of the daemon's first answer we accept before it is a Welcome.
_HANDSHAKE_MAX = 64 * 1024
#: Write buffer above which the socket asks us to stop writing.
_WRITE_HIGH = 1024 * 1024
#: Attempts when the daemon took a slow hello for a seed (JSON) client.
_LATE_RETRIES = 3
#: Smallest frame body bound after the handshake (see Link._greet).
_CONTROL_MAX = 16 * 1024 * 1024


class Welcome:
    """What the daemon said in its Welcome."""

    __slots__ = ("node", "client", "max_message")

    def __init__(self, node: int, client: int, max_message: int) -> None:
        self.node = node
        self.client = client
        self.max_message = max_message


class _Late(Exception):
    """The daemon decided we were a seed client before our hello arrived."""


class Link(asyncio.Protocol):
    """One socket to the daemon."""

    def __init__(self, channel: str, hello: bytes) -> None:
        self.channel = channel
        self.hello = hello
        self.decoder = _frame.Decoder(channel, 0, _HANDSHAKE_MAX)
        self.transport: Optional[asyncio.Transport] = None
        self.welcome: "asyncio.Future[Welcome]" = asyncio.get_running_loop().create_future()
        #: The connection once attached; frames before that wait in ``early``.
        self.sink: Any = None
        self.early: List[Frame] = []
        #: Once attached: decodes and dispatches a read in one go (``_receive``).
        self.receive: Optional[Callable[[bytes], None]] = None
        #: Why the socket ended, when we know better than "closed".
        self.end_reason: Optional[str] = None
        self.end_code: Optional[int] = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        transport.write(self.hello)

    def data_received(self, data: bytes) -> None:
        receive = self.receive
        if receive is not None:
            try:
                receive(data)
            except ProtocolError as e:
                self._fail(f"bad frame from the daemon: {e}")
            return
        try:
            if not self.welcome.done():
                if data[:1] == b"{" and self.decoder.partial == 0:
                    raise _Late()
                frames = self.decoder.feed(data)
                if not frames:
                    return
                self._greet(frames)
                return
            frames = self.decoder.feed(data)
        except _Late as e:
            self.welcome.set_exception(e)
            self._abort(None)
            return
        except ProtocolError as e:
            self._fail(f"bad frame from the daemon: {e}")
            return
        sink = self.sink
        if sink is None:
            self.early.extend(frames)
        elif frames:
            sink.on_frames(frames)

    def _greet(self, frames: List[Frame]) -> None:
        first = frames[0]
        if isinstance(first, Message) or first[0] != _frame.WELCOME:
            if not isinstance(first, Message) and first[0] == _frame.ERROR:
                self.welcome.set_exception(RefusedError(first[4], self.channel, ""))
            else:
                self.welcome.set_exception(
                    ProtocolError(f"unexpected first frame from the daemon: {first!r}")
                )
            self._abort(None)
            return
        _, _version, node, client, max_message, channel = first
        if channel != self.channel:
            self.welcome.set_exception(
                ProtocolError(f"the daemon says this is channel {channel!r}, expected {self.channel!r}")
            )
            self._abort(None)
            return
        self.decoder.node = node
        # Control answers are not bounded by maxmessage (a showchannel of many
        # clients under a small maxmessage is larger): accept at least 16 MiB.
        self.decoder.max_body = max(max_message, _CONTROL_MAX) + _frame.FRAME_OVERHEAD
        for f in frames[1:]:
            if isinstance(f, Message) and f.node == 0:
                f.node = node
        self.early.extend(frames[1:])
        self.welcome.set_result(Welcome(node, client, max_message))

    def _fail(self, reason: str) -> None:
        if not self.welcome.done():
            self.welcome.set_exception(ProtocolError(reason))
        self._abort(reason)

    def _abort(self, reason: Optional[str]) -> None:
        if reason is not None and self.end_reason is None:
            self.end_reason = reason
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> Optional[bool]:
        if self.decoder.partial and self.end_reason is None:
            self.end_reason = (
                f"the daemon closed the connection in the middle of a frame "
                f"({self.decoder.partial} bytes of it received)"
            )
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost = True
        if not self.welcome.done():
            self.welcome.set_exception(
                ProtocolError("the daemon closed the connection during the handshake")
            )
        if self.end_reason is None:
            self.end_reason = (
                f"read failed: {exc}" if exc is not None else "the daemon closed the connection"
            )
        if self.sink is not None:
            self.sink.on_lost(self)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_writable(self, False)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_writable(self, True)


def _connect_error(e: OSError, channel: str, path: str, why: str) -> ConnectError:
    if isinstance(e, FileNotFoundError):
        return NoSuchChannelError(
            f"no channel {channel!r}: nothing at {path} (socket directory chosen because {why}). "
            f"Channels come from the server's config: is ncserver running with a config that lists "
            f"{channel!r}, and does it use this socket directory? (The client's directory comes from "
            f"{SOCKET_DIR_RULE}.)",
            channel,
            path,
        )
    if isinstance(e, ConnectionRefusedError):
        return NotRunningError(
            f"no ncserver is accepting on {path} (channel {channel!r}); it may have stopped. "
            f"Start ncserver and retry",
            channel,
            path,
        )
    if isinstance(e, PermissionError):
        return PermissionDeniedError(
            f"permission denied on {path} (channel {channel!r}): check the server's socketmode "
            f"and your user's groups",
            channel,
            path,
        )
    return ConnectError(f"cannot connect to {path}: {e}", channel, path)


async def _open(loop: asyncio.AbstractEventLoop, path: str, link: Link) -> None:
    if sys.platform == "win32":
        create_pipe = getattr(loop, "create_pipe_connection", None)
        if create_pipe is None:
            raise ConnectError(
                "named pipes need asyncio's Proactor event loop (the default on Windows); "
                f"this loop is {type(loop).__name__}",
                link.channel,
                path,
            )
        await create_pipe(lambda: link, path)
        return
    await loop.create_unix_connection(lambda: link, path)


async def dial(
    channel: str, path: str, why: str, name: str, timeout: float
) -> Tuple[Link, Welcome]:
    """Connects to ``path`` and completes the handshake."""
    loop = asyncio.get_running_loop()
    hello = _frame.hello(os.getpid(), name)
    for attempt in range(_LATE_RETRIES):
        link = Link(channel, hello)
        try:
            await asyncio.wait_for(_open(loop, path, link), timeout)
        except asyncio.TimeoutError:
            raise HandshakeError(
                f"connecting to {path} took over {timeout} s", channel, path
            ) from None
        except OSError as e:
            raise _connect_error(e, channel, path, why) from None
        try:
            welcome = await asyncio.wait_for(asyncio.shield(link.welcome), timeout)
        except asyncio.TimeoutError:
            link._abort("handshake timed out")
            raise HandshakeError(
                f"handshake with the server on {path} failed: no answer within {timeout} s",
                channel,
                path,
            ) from None
        except _Late:
            if attempt + 1 < _LATE_RETRIES:
                continue
            raise HandshakeError(
                f"handshake with the server on {path} failed: the daemon took this connection "
                f"for a seed (JSON) client because the hello came late",
                channel,
                path,
            ) from None
        except RefusedError as e:
            raise RefusedError(
                f"the server refused the connection to channel {channel!r}: {e}", channel, path
            ) from None
        except ProtocolError as e:
            raise HandshakeError(
                f"handshake with the server on {path} failed: {e}", channel, path
            ) from None
        return link, welcome
    raise AssertionError("unreachable")
