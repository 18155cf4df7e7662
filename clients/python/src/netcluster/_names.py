"""Channel and event names, and where channel sockets live.

The rules are the daemon's (crates/proto/src/names.rs) so that a name the
client accepts is one the daemon accepts, and the socket directory is found
the same way by daemon and every client: ``$NETCLUSTER_SOCKET_DIR`` if set,
else ``/var/run`` for root, else ``$XDG_RUNTIME_DIR``, else ``/tmp``.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Optional, Tuple

from .errors import InvalidNameError

#: Prefix of each channel's socket file (and Windows pipe) name.
SOCKET_PREFIX = "netcluster-"
#: The environment variable that overrides the socket directory.
SOCKET_DIR_ENV = "NETCLUSTER_SOCKET_DIR"
#: Longest channel name in bytes.
MAX_CHANNEL_LEN = 255
#: Longest event name in bytes.
MAX_EVENT_LEN = 1024
#: The event name that subscribes to every event.
WILDCARD = "*"
#: How the default socket directory is chosen, for error messages.
SOCKET_DIR_RULE = (
    "the client's socket_dir option, else NETCLUSTER_SOCKET_DIR, else /var/run for root, "
    "else $XDG_RUNTIME_DIR, else /tmp"
)


def _is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return bool(geteuid is not None and geteuid() == 0)


def default_socket_dir(
    env: Optional[Mapping[str, str]] = None, root: Optional[bool] = None
) -> Tuple[str, str]:
    """The socket directory when none is given, and which rule chose it."""
    env = os.environ if env is None else env
    root = _is_root() if root is None else root
    if env.get(SOCKET_DIR_ENV):
        return env[SOCKET_DIR_ENV], f"{SOCKET_DIR_ENV} is set"
    if root:
        return "/var/run", "running as root"
    if env.get("XDG_RUNTIME_DIR"):
        return env["XDG_RUNTIME_DIR"], "XDG_RUNTIME_DIR is set"
    return "/tmp", "no NETCLUSTER_SOCKET_DIR or XDG_RUNTIME_DIR, not root"


def channel_path(channel: str, socket_dir: Optional[str] = None) -> Tuple[str, str]:
    """The path to connect to for ``channel`` and where its directory came from.

    On Windows channels are the named pipes ``\\\\.\\pipe\\netcluster-{channel}``
    and the directory plays no part.
    """
    if sys.platform == "win32":
        return "\\\\.\\pipe\\" + SOCKET_PREFIX + channel, "a Windows named pipe"
    if socket_dir is not None:
        return os.path.join(os.fspath(socket_dir), SOCKET_PREFIX + channel), "the socket_dir option"
    d, why = default_socket_dir()
    return os.path.join(d, SOCKET_PREFIX + channel), why


def check_channel(name: str) -> None:
    """Raises :class:`InvalidNameError` if ``name`` cannot be a channel."""
    if not isinstance(name, str):
        raise InvalidNameError(f"channel name must be a str, got {type(name).__name__}")
    if not name:
        raise InvalidNameError("channel name is empty")
    n = len(name.encode("utf-8", "surrogatepass"))
    if n > MAX_CHANNEL_LEN:
        raise InvalidNameError(f"channel name is {n} bytes long; the limit is {MAX_CHANNEL_LEN}")
    if name in (".", ".."):
        raise InvalidNameError(f"channel name {name!r} is reserved: it names a directory")
    for c in name:
        if c == "/":
            what = "'/'"
        elif c == "\\":
            what = "'\\'"
        elif c == "\0":
            what = "a NUL byte"
        elif ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F:
            what = "a control character"
        else:
            continue
        raise InvalidNameError(f"channel name {name!r} contains {what}, which is not allowed")


def encode_subscription_name(name: str) -> bytes:
    """Checks an event name to subscribe to (``*`` allowed) and encodes it."""
    if not isinstance(name, str):
        raise InvalidNameError(f"event name must be a str, got {type(name).__name__}")
    if not name:
        raise InvalidNameError("event name is empty")
    try:
        b = name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidNameError(f"event name {name!r} is not valid UTF-8: {e}") from None
    if len(b) > MAX_EVENT_LEN:
        raise InvalidNameError(f"event name is {len(b)} bytes long; the limit is {MAX_EVENT_LEN}")
    return b


def encode_event_name(name: str) -> bytes:
    """Checks an event name to emit (not ``*``) and encodes it."""
    if name == WILDCARD:
        raise InvalidNameError(
            "event name '*' is reserved: '*' subscribes to all events and cannot be emitted"
        )
    return encode_subscription_name(name)
