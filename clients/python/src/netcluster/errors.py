"""The exceptions this package raises.

Every error is a :class:`NetclusterError`; the subclasses say which
operation failed and why, with messages that name what to check (the
socket path tried and the socket-directory rule, the limit exceeded, the
daemon's own reason for closing the connection).
"""

from __future__ import annotations

from typing import Optional


class NetclusterError(Exception):
    """Base class of every error raised by this package."""


class InvalidNameError(NetclusterError, ValueError):
    """A channel or event name breaks the daemon's rules (docs/PROTOCOL.md)."""


class ConnectError(NetclusterError, OSError):
    """Connecting to a channel failed."""

    def __init__(self, message: str, channel: str, path: str) -> None:
        super().__init__(message)
        #: The channel asked for.
        self.channel = channel
        #: The socket (or pipe) path tried.
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class NoSuchChannelError(ConnectError, FileNotFoundError):
    """Nothing exists at the channel's socket path."""


class NotRunningError(ConnectError, ConnectionRefusedError):
    """The socket exists but no daemon accepts on it."""


class PermissionDeniedError(ConnectError, PermissionError):
    """The socket's permissions do not let this user in."""


class RefusedError(ConnectError):
    """The daemon answered the handshake with an error (e.g. access denied)."""


class HandshakeError(ConnectError):
    """The handshake did not complete (no answer, garbage, or closed)."""


class DisconnectedError(NetclusterError, ConnectionError):
    """The operation needs a connection and there is none.

    ``reason`` is why: the daemon's own words when it closed the
    connection (for example a slow consumer), "reconnecting to the daemon
    (...)" while the client is reconnecting, or "disconnected by the
    application" after :meth:`disconnect`. ``code`` is the daemon's error
    code when it sent one (7 = slow consumer, see :class:`ErrorCode`).
    """

    def __init__(self, reason: str, code: Optional[int] = None) -> None:
        super().__init__(f"not connected: {reason}")
        self.reason = reason
        self.code = code


class TooLargeError(NetclusterError, ValueError):
    """A payload exceeds the daemon's ``maxmessage``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"message of {size} bytes exceeds the server's maxmessage of {limit} bytes"
        )
        self.size = size
        self.limit = limit


class SubscribeRefusedError(NetclusterError):
    """The daemon refused a subscription (e.g. over 1 MiB of event names)."""


class RequestError(NetclusterError):
    """A control request failed; the message is the daemon's explanation."""


class RequestTimeoutError(RequestError, TimeoutError):
    """No answer to a control request in time."""


class ProtocolError(NetclusterError):
    """The daemon sent bytes that are not the native protocol."""


class ErrorCode:
    """Codes of the daemon's Error frames (docs/PROTOCOL.md)."""

    BAD_FRAME = 1
    UNSUPPORTED_VERSION = 2
    TOO_LARGE = 3
    BAD_NAME = 4
    BAD_REQUEST = 5
    DENIED = 6
    SLOW_CONSUMER = 7
    CHANNEL_REMOVED = 8
    SHUTDOWN = 9
