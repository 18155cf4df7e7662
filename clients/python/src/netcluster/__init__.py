"""netcluster: emit and listen to events across processes and machines
through the local ``ncserver`` daemon, in its native protocol.

Two faces over one core:

* :class:`netcluster.Client` — blocking and thread-safe; handlers run on
  the client's background thread::

      import netcluster
      with netcluster.Client("A") as a:
          a.on("log", lambda msg: print(msg.origin, msg.data))
          a.emit("log", {"level": "info"})

* :class:`netcluster.aio.Client` — asyncio::

      from netcluster.aio import Client
      async with await Client.connect("A") as a:
          await a.emit("log", "hello")
          async for msg in a.subscribe("log"):
              ...
"""

from ._blocking import Client, Subscription
from ._names import SOCKET_DIR_ENV, channel_path, default_socket_dir
from .errors import (
    ConnectError,
    DisconnectedError,
    ErrorCode,
    HandshakeError,
    InvalidNameError,
    NetclusterError,
    NoSuchChannelError,
    NotRunningError,
    PermissionDeniedError,
    ProtocolError,
    RefusedError,
    RequestError,
    RequestTimeoutError,
    SubscribeRefusedError,
    TooLargeError,
)
from .message import Message

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Subscription",
    "Message",
    "SOCKET_DIR_ENV",
    "channel_path",
    "default_socket_dir",
    "ConnectError",
    "DisconnectedError",
    "ErrorCode",
    "HandshakeError",
    "InvalidNameError",
    "NetclusterError",
    "NoSuchChannelError",
    "NotRunningError",
    "PermissionDeniedError",
    "ProtocolError",
    "RefusedError",
    "RequestError",
    "RequestTimeoutError",
    "SubscribeRefusedError",
    "TooLargeError",
]
