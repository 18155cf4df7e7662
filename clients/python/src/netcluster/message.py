"""A received message: event, payload, channel and origin.

The payload is a :class:`memoryview` into the bytes the message arrived in,
so receiving copies nothing per message; :attr:`Message.data` parses it as
JSON (the default encoding of :meth:`emit`), :meth:`Message.bytes` copies it
out.
"""

from __future__ import annotations

import json
from typing import Any


class Message:
    """One message as delivered to a listener or a subscription.

    Attributes:
        event: the event name.
        channel: the channel it was emitted on (another channel than the
            receiver's when it arrived through a propagation rule).
        node: id of the daemon it entered through (random per daemon start).
        client: id that daemon gave the emitter (0: the daemon itself).
        seq: the message's number among its origin's messages (from 1).
        payload: the payload bytes, a view into the receive buffer. Keeping
            a message keeps the buffer it arrived in; copy with
            :meth:`bytes` to keep only the payload.
    """

    __slots__ = ("event", "channel", "node", "client", "seq", "payload")

    def __init__(
        self, event: str, channel: str, node: int, client: int, seq: int, payload: memoryview
    ) -> None:
        self.event = event
        self.channel = channel
        self.node = node
        self.client = client
        self.seq = seq
        self.payload = payload

    @property
    def data(self) -> Any:
        """The payload parsed as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(str(self.payload, "utf-8"))

    def bytes(self) -> bytes:
        """A copy of the payload."""
        return self.payload.tobytes()

    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return str(self.payload, "utf-8")

    @property
    def origin(self) -> str:
        """``{node as 16 hex digits}:{client}``, the form the daemon and ``ncclient`` show."""
        return f"{self.node:016x}:{self.client}"

    def __repr__(self) -> str:
        head = bytes(self.payload[:64]).decode("utf-8", "replace")
        return (
            f"Message(channel={self.channel!r}, event={self.event!r}, origin={self.origin!r}, "
            f"seq={self.seq}, payload={head!r}{'...' if len(self.payload) > 64 else ''})"
        )
