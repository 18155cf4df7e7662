"""Bad input from the daemon's side: a fake daemon on a Unix socket sends
garbage, truncated frames, absurd lengths or nothing at all. The client
must fail with a clear error, or time out where it must, never hang."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from typing import Any, Callable, List

import pytest

from netcluster import DisconnectedError, HandshakeError, RequestTimeoutError
from netcluster.aio import Client

from helpers import run, wait


def welcome(channel: str = "F", max_message: int = 1 << 20) -> bytes:
    ch = channel.encode()
    body = struct.pack("<HHQQIB", 1, 0, 0x1234, 7, max_message, len(ch)) + ch
    return struct.pack("<BI", 0x81, len(body)) + body


class FakeDaemon:
    """Accepts connections on ``{dir}/netcluster-F`` and runs ``script(conn)``
    for each in a thread."""

    def __init__(self, directory: str, script: Callable[[socket.socket], None]) -> None:
        self.path = os.path.join(directory, "netcluster-F")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.script = script
        self.stopped = False
        self.conns: List[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.run_one, args=(c,), daemon=True).start()

    def run_one(self, c: socket.socket) -> None:
        try:
            c.recv(4096)  # the hello
            self.script(c)
        except OSError:
            pass

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.thread.join(5)


@pytest.fixture
def fake(tmp_path: Any) -> Any:
    made: List[FakeDaemon] = []

    def make(script: Callable[[socket.socket], None]) -> FakeDaemon:
        f = FakeDaemon(str(tmp_path), script)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def connect(f: FakeDaemon, **kw: Any) -> Any:
    return Client.connect("F", socket_dir=os.path.dirname(f.path), reconnect=False, **kw)


def hold(c: socket.socket) -> None:
    time.sleep(30)


def test_garbage_instead_of_welcome(fake: Any) -> None:
    f = fake(lambda c: (c.sendall(b"\x99garbage-garbage"), hold(c)))

    async def main() -> None:
        with pytest.raises(HandshakeError) as e:
            await wait(connect(f))
        assert "unknown frame type 0x99" in str(e.value)

    run(main())


def test_silent_daemon_times_out(fake: Any) -> None:
    f = fake(hold)

    async def main() -> None:
        with pytest.raises(HandshakeError) as e:
            await wait(connect(f, connect_timeout=0.5))
        assert "no answer within" in str(e.value)

    run(main())


def test_closed_during_handshake(fake: Any) -> None:
    f = fake(lambda c: (c.sendall(welcome()[:9]), c.close()))

    async def main() -> None:
        with pytest.raises(HandshakeError) as e:
            await wait(connect(f))
        assert "closed the connection during the handshake" in str(e.value)

    run(main())


def test_wrong_channel_in_welcome(fake: Any) -> None:
    f = fake(lambda c: (c.sendall(welcome("G")), hold(c)))

    async def main() -> None:
        with pytest.raises(HandshakeError) as e:
            await wait(connect(f))
        assert "'G'" in str(e.value)

    run(main())


@pytest.mark.parametrize(
    "after_welcome, expected",
    [
        # A Deliver cut short, then the socket closes.
        (struct.pack("<BI", 0x82, 40) + b"\x00\x01\x01", "middle of a frame"),
        # An unknown frame type.
        (struct.pack("<BI", 0x7E, 0), "unknown frame type 0x7e"),
        # A length far over maxmessage.
        (struct.pack("<BI", 0x82, 0xFFFFFFFF), "over the limit"),
        # A Deliver whose event runs past its body.
        (struct.pack("<BI", 0x82, 6) + b"\x00\x01\x01\xff\x00x", "event past the end"),
        # A Deliver with a never-ending varint.
        (struct.pack("<BI", 0x82, 12) + b"\x00" + b"\xff" * 11, "varint"),
        # A Welcome twice.
        (welcome(), "unexpected frame"),
        # Invalid UTF-8 in an event name.
        (struct.pack("<BI", 0x82, 6) + b"\x00\x01\x01\x01\x00\xff", "not UTF-8"),
    ],
)
def test_bad_frames_after_welcome_end_the_connection(
    fake: Any, after_welcome: bytes, expected: str
) -> None:
    def script(c: socket.socket) -> None:
        c.sendall(welcome())
        time.sleep(0.2)  # let the client subscribe first
        c.sendall(after_welcome)
        c.shutdown(socket.SHUT_WR)
        hold(c)

    f = fake(script)

    async def main() -> None:
        cl = await wait(connect(f))
        sub = cl.subscribe("x")  # no ack will come
        with pytest.raises(DisconnectedError) as e:
            await wait(sub.__anext__())
        assert expected in str(e.value), str(e.value)
        assert cl.state == "closed"
        with pytest.raises(DisconnectedError):
            await cl.emit("x", 1)

    run(main())


def test_truncated_frame_on_open_socket_times_out_requests(fake: Any) -> None:
    def script(c: socket.socket) -> None:
        c.sendall(welcome() + struct.pack("<BI", 0x83, 100) + b"\x01\x00")
        hold(c)

    f = fake(script)

    async def main() -> None:
        cl = await wait(connect(f))
        with pytest.raises(RequestTimeoutError) as e:
            await cl.request("nc-control-status", None, timeout=0.5)
        assert "no answer" in str(e.value)
        await wait(cl.disconnect())
        assert cl.state == "closed"

    run(main())


def test_legacy_answer_is_refused_after_retries(fake: Any) -> None:
    f = fake(lambda c: (c.sendall(b'{"event":"x"}\x00'), hold(c)))

    async def main() -> None:
        with pytest.raises(HandshakeError) as e:
            await wait(connect(f))
        assert "seed (JSON) client" in str(e.value)

    run(main())
