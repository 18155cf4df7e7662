"""The asyncio face against a real ncserver: routing, propagation, server-side
filtering, echo, once/remove_listener, subscriptions, large payloads,
bursts, reconnection and errors."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from typing import Any, List

import pytest

from netcluster import (
    DisconnectedError,
    InvalidNameError,
    Message,
    NoSuchChannelError,
    TooLargeError,
)
from netcluster.aio import Client

from helpers import WAIT, run, until, wait


def connect(daemon: Any, channel: str, **kw: Any) -> "asyncio.Future[Client]":
    return Client.connect(channel, socket_dir=daemon.socket_dir, **kw)  # type: ignore[return-value]


async def clients_of(ctl: Client, channel: str) -> List[Any]:
    shown = await ctl.showchannel(channel)
    return shown if isinstance(shown, list) else shown["clients"]


def test_routing_propagation_and_filtering(daemon: Any) -> None:
    async def main() -> None:
        a = await connect(daemon, "A", name="emitter")
        a2 = await connect(daemon, "A", name="a-listener")
        b = await connect(daemon, "B", name="b-listener")
        c = await connect(daemon, "C", name="c-listener")
        got: dict = {"a2": [], "b": [], "c": [], "b_y": []}
        await a2.on("x", lambda m: got["a2"].append(m))
        await b.on("x", lambda m: got["b"].append(m))
        await b.on("*", lambda m: got["b_y"].append(m.event))
        await c.on("*", lambda m: got["c"].append(m))
        for i in range(5):
            await a.emit("x", {"i": i})
            await a.emit("y", i)
        await a.flush()
        await until(lambda: len(got["a2"]) == 5 and len(got["b"]) == 5 and len(got["b_y"]) == 10, "deliveries")
        assert [m.data for m in got["a2"]] == [{"i": i} for i in range(5)]
        m: Message = got["b"][0]
        assert m.channel == "A" and m.event == "x"
        assert m.client == a.client_id and m.node == a.node_id
        assert m.origin == f"{a.node_id:016x}:{a.client_id}"
        assert [x.seq for x in got["a2"]] == [1, 3, 5, 7, 9]
        assert got["c"] == []  # C is not a propagation target
        # Filtering happens in the daemon: a2 (listening to "x" only) was
        # sent 5 messages, not 10.
        ctl = await connect(daemon, "control")
        (row,) = [r for r in await clients_of(ctl, "A") if r["name"] == "a-listener"]
        assert row["messages_out"] == 5
        assert row["subscriptions"] == ["x"]
        for cl in (a, a2, b, c, ctl):
            await cl.disconnect()

    run(main())


def test_echo_on_by_default_and_switchable(daemon: Any) -> None:
    async def main() -> None:
        a = await connect(daemon, "A")
        quiet = await connect(daemon, "A", echo=False)
        mine: List[Any] = []
        heard: List[Any] = []
        await a.on("e", lambda m: mine.append(m.data))
        await quiet.on("e", lambda m: heard.append(m.data))
        await a.emit("e", "from-a")
        await quiet.emit("e", "from-quiet")
        await a.flush()
        await quiet.flush()
        await until(lambda: len(mine) == 2 and len(heard) == 1, "echo and delivery")
        assert sorted(mine) == ["from-a", "from-quiet"]  # own echo + the other's
        assert heard == ["from-a"]  # no echo of its own emit
        await a.disconnect()
        await quiet.disconnect()

    run(main())


def test_once_and_remove_listener(daemon: Any) -> None:
    async def main() -> None:
        a = await connect(daemon, "A", echo=False)
        b = await connect(daemon, "A")
        once: List[int] = []
        every: List[int] = []
        await b.once("n", lambda m: once.append(m.data))
        lid = await b.on("n", lambda m: every.append(m.data))
        await a.emit("n", 1)
        await a.emit("n", 2)
        await a.flush()
        await until(lambda: len(every) == 2, "two messages")
        assert once == [1]
        assert b.remove_listener(lid) is True
        assert b.remove_listener(lid) is False
        ctl = await connect(daemon, "control")
        await until_subs(ctl, b, [])
        await a.emit("n", 3)
        await a.flush()
        await b.flush()
        assert every == [1, 2] and once == [1]
        for cl in (a, b, ctl):
            await cl.disconnect()

    run(main())


async def until_subs(ctl: Client, cl: Client, subs: List[str]) -> None:
    for _ in range(1000):
        rows = [r for r in await clients_of(ctl, cl.channel) if r["id"] == cl.client_id]
        if rows and sorted(rows[0]["subscriptions"]) == sorted(subs):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"subscriptions never became {subs}")


def test_subscribe_iterates_and_unsubscribes(daemon: Any) -> None:
    async def main() -> None:
        a = await connect(daemon, "A", echo=False)
        b = await connect(daemon, "B")
        ctl = await connect(daemon, "control")
        sub = await b.subscribe("m1", "m2")
        await until_subs(ctl, b, ["m1", "m2"])
        for i in range(10):
            await a.emit("m1" if i % 2 else "m2", i)
        await a.emit("other", "ignored")
        await a.flush()
        seen = []
        async for msg in sub:
            seen.append((msg.event, msg.data))
            if len(seen) == 10:
                break
        assert seen == [("m1" if i % 2 else "m2", i) for i in range(10)]
        sub.close()
        await until_subs(ctl, b, [])
        # Dropping a subscription unsubscribes too (here: after breaking
        # out of the loop over it).
        sub2 = await b.subscribe("gone")
        await a.emit("gone", 1)
        async for msg in sub2:
            break
        del sub2
        await until_subs(ctl, b, [])
        for cl in (a, b, ctl):
            await cl.disconnect()

    run(main())


def test_ten_megabyte_payloads_and_too_large(daemon: Any) -> None:
    async def main() -> None:
        a = await connect(daemon, "A", echo=False)
        b = await connect(daemon, "A")
        sub = await b.subscribe("big")
        big = os.urandom(10 * 1024 * 1024)
        await a.emit_bytes("big", big)
        await a.emit_bytes("big", big[::-1])
        m1 = await wait(sub.__anext__())
        m2 = await wait(sub.__anext__())
        assert m1.bytes() == big and m2.bytes() == big[::-1]
        with pytest.raises(TooLargeError) as e:
            await a.emit_bytes("big", b"x" * (a.max_message + 1))
        assert "maxmessage" in str(e.value) and str(a.max_message) in str(e.value)
        await a.disconnect()
        await b.disconnect()

    run(main())


def test_subscription_closed_from_another_thread_unsubscribes(daemon: Any) -> None:
    """The asyncio client's buffer has no lock: a subscription closed (or
    collected) on another thread hands its Unsubscribe to the loop thread."""

    async def main() -> None:
        ctl = await connect(daemon, "control")
        c = await connect(daemon, "C")
        sub = await c.subscribe("t1", "t2")
        await until_subs(ctl, c, ["t1", "t2"])
        t = threading.Thread(target=sub.close)
        t.start()
        t.join()
        await until_subs(ctl, c, [])
        await c.emit("t1", 1)  # the connection is intact after it
        await c.flush()
        await c.disconnect()
        await ctl.disconnect()

    run(main())


class _NoReentry:
    """Stands in for the listener table's lock: entering it while held (the
    same thread re-entering, a deadlock with the real lock) raises."""

    def __init__(self) -> None:
        self.held = False

    def __enter__(self) -> None:
        assert not self.held, "the table lock was re-entered"
        self.held = True

    def __exit__(self, *exc: Any) -> None:
        self.held = False


def test_a_subscription_collected_inside_the_clients_own_code(daemon: Any) -> None:
    """The collector can run while the client holds its table lock (any
    allocation may trigger it): a collected subscription unsubscribes
    later, on the loop, instead of re-entering the lock."""

    async def main() -> None:
        ctl = await connect(daemon, "control")
        c = await connect(daemon, "C")
        sub = await c.subscribe("g1")
        await until_subs(ctl, c, ["g1"])
        table = c._conn.table
        table._lock = _NoReentry()  # type: ignore[assignment]
        with table._lock:
            del sub
            gc.collect()
        await until_subs(ctl, c, [])
        assert "g1" not in table.by_event
        await c.disconnect()
        await ctl.disconnect()

    run(main())


def test_a_dropped_client_closes_itself(daemon: Any) -> None:
    async def main() -> None:
        ctl = await connect(daemon, "control")
        r = await connect(daemon, "C")
        got: List[Any] = []
        await r.on("x", lambda m: got.append(m.data))
        c = await connect(daemon, "C")
        await c.on("x", lambda m: None)
        cid = c.client_id
        await c.emit("x", "last words")  # still written: dropping closes like close()
        assert cid in [row["id"] for row in await clients_of(ctl, "C")]
        del c
        gc.collect()
        for _ in range(1000):
            if cid not in [row["id"] for row in await clients_of(ctl, "C")]:
                break
            await asyncio.sleep(0.02)
        assert [row["id"] for row in await clients_of(ctl, "C")] == [r.client_id]
        await until(lambda: got == ["last words"], "the dropped client's last message")
        await r.disconnect()
        await ctl.disconnect()

    run(main())


def test_payload_sizes_changing_between_emits(daemon: Any) -> None:
    """The frame start is cached per event for the last size: sizes that
    repeat, change and come back must all frame correctly."""

    async def main() -> None:
        a = await connect(daemon, "A", echo=False)
        b = await connect(daemon, "A")
        got: List[bytes] = []
        await b.on("v", lambda m: got.append(m.bytes()))
        await b.on("w", lambda m: got.append(b"w:" + m.bytes()))
        sent = [b"abc", b"def", b"ghijk", b"lmn", b"", b"x" * 1000, b"opq"]
        for p in sent:
            await a.emit_bytes("v", p)
            a.emit_bytes_nowait("w", p)
        await a.flush()
        want = [q for p in sent for q in (p, b"w:" + p)]
        await until(lambda: len(got) == len(want), "every message")
        assert got == want
        for cl in (a, b):
            await cl.disconnect()

    run(main())


def test_once_and_removal_inside_a_burst(daemon: Any) -> None:
    """A burst arrives in few large reads: a once listener fires once, a
    listener removing itself stops at once, the others see all in order."""
    n = 20_000

    async def main() -> None:
        a = await connect(daemon, "A", echo=False)
        b = await connect(daemon, "A")
        once: List[int] = []
        upto: List[int] = []
        every: List[int] = []
        ids: List[int] = []

        def stopper(m: Message) -> None:
            upto.append(m.seq)
            if len(upto) == 100:
                b.remove_listener(ids[0])

        await b.once("burst", lambda m: once.append(m.seq))
        ids.append(await b.on("burst", stopper))
        await b.on("burst", lambda m: every.append(m.seq))
        for i in range(n):
            await a.emit_bytes("burst", i.to_bytes(8, "little"))
        await a.flush()
        await until(lambda: len(every) == n, "the whole burst")
        first = every[0]
        assert every == list(range(first, first + n))
        assert once == [first] and upto == every[:100]
        for cl in (a, b):
            await cl.disconnect()

    run(main(), 240)


def test_hundred_thousand_in_order(daemon: Any) -> None:
    n = 100_000

    async def main() -> None:
        a = await connect(daemon, "A", echo=False)
        b = await connect(daemon, "B")
        sub = await b.subscribe("burst")
        got = 0

        async def reader() -> None:
            nonlocal got
            async for m in sub:
                assert int.from_bytes(m.payload[:8], "little") == got
                got += 1
                if got == n:
                    return

        task = asyncio.ensure_future(reader())
        for i in range(n):
            await a.emit_bytes("burst", i.to_bytes(8, "little") + b"........")
        await a.flush()
        await wait(task, 180)
        assert got == n
        await a.disconnect()
        await b.disconnect()

    run(main(), 240)


def test_reconnect_after_daemon_restart(daemon: Any) -> None:
    async def main() -> None:
        b = await connect(daemon, "A")
        got: List[Any] = []
        await b.on("after", lambda m: got.append(m.data))
        sub = await b.subscribe("stream")
        daemon.stop()
        await until(lambda: b.state == "reconnecting", "reconnecting state")
        with pytest.raises(DisconnectedError) as e:
            await b.request("nc-control-status")
        assert "reconnecting" in str(e.value)
        await b.emit("after", "queued while offline")  # kept in the offline queue
        daemon.start()
        await until(lambda: b.state == "connected", "reconnection")
        a = await connect(daemon, "A", echo=False)
        await a.emit("after", "fresh")
        await a.emit("stream", "to the subscription")
        await a.flush()
        await until(lambda: "fresh" in got, "delivery after reconnect")
        assert got[0] == "queued while offline"  # own echo at emit time
        assert (await wait(sub.__anext__())).data == "to the subscription"
        assert b.closed_reason is None
        # The message emitted while offline reached the daemon after the
        # reconnection: a listener on A that subscribed since sees nothing
        # of it, but the daemon counted it in.
        ctl = await connect(daemon, "control")
        (row,) = [r for r in await clients_of(ctl, "A") if r["id"] == b.client_id]
        assert row["messages_in"] == 1 and sorted(row["subscriptions"]) == ["after", "stream"]
        await ctl.disconnect()
        await a.disconnect()
        await b.disconnect()

    run(main())


def test_no_reconnect_makes_loss_final(daemon: Any) -> None:
    async def main() -> None:
        b = await connect(daemon, "A", reconnect=False)
        sub = await b.subscribe("x")
        daemon.stop()
        with pytest.raises(DisconnectedError):
            await wait(sub.__anext__())
        assert b.state == "closed"
        assert b.closed_reason
        with pytest.raises(DisconnectedError):
            await b.emit("x", 1)

    run(main())


def test_errors_name_what_was_wrong(daemon: Any, monkeypatch: Any) -> None:
    async def main() -> None:
        with pytest.raises(NoSuchChannelError) as e:
            await connect(daemon, "nope")
        msg = str(e.value)
        assert os.path.join(daemon.socket_dir, "netcluster-nope") in msg
        assert "NETCLUSTER_SOCKET_DIR" in msg and "XDG_RUNTIME_DIR" in msg
        assert isinstance(e.value, FileNotFoundError)
        # Without socket_dir, the rule applies: NETCLUSTER_SOCKET_DIR here.
        monkeypatch.setenv("NETCLUSTER_SOCKET_DIR", daemon.socket_dir)
        a = await Client.connect("A")
        assert a.path == os.path.join(daemon.socket_dir, "netcluster-A")
        with pytest.raises(InvalidNameError):
            await a.emit("*", 1)
        with pytest.raises(InvalidNameError):
            await a.emit("", 1)
        with pytest.raises(InvalidNameError):
            await Client.connect("a/b")
        with pytest.raises(TypeError) as t:
            await a.emit("x", b"bytes")
        assert "emit_bytes" in str(t.value)
        await a.disconnect()
        with pytest.raises(DisconnectedError) as d:
            await a.emit("x", 1)
        assert "disconnected by the application" in str(d.value)
        monkeypatch.delenv("NETCLUSTER_SOCKET_DIR")
        monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent-xdg")
        if os.geteuid() != 0:
            with pytest.raises(NoSuchChannelError) as e2:
                await Client.connect("A")
            assert "/nonexistent-xdg/netcluster-A" in str(e2.value)

    run(main())


def test_slow_consumer_disconnect_reports_reason(make_daemon: Any) -> None:
    d = make_daemon(
        {"queuebytes": "64KiB", "channels": {"S": {"slowconsumer": "disconnect"}}}
    )

    async def main() -> None:
        pub = await Client.connect("S", socket_dir=d.socket_dir, echo=False)
        slow = await Client.connect(
            "S", socket_dir=d.socket_dir, reconnect=False, subscription_capacity=1
        )
        sub = await slow.subscribe("flood")
        payload = b"z" * 4096
        # The slow client stops reading once its subscription holds one
        # message; the daemon's queue for it then passes 64 KiB.
        for _ in range(2000):
            try:
                await pub.emit_bytes("flood", payload)
            except DisconnectedError:
                break
        await pub.flush()
        # The daemon closed it meanwhile; the client learns it when it
        # reads on, after the messages it holds.
        with pytest.raises(DisconnectedError) as e:
            while True:
                await wait(sub.__anext__())
        assert "slow consumer" in str(e.value)
        assert e.value.code == 7
        assert "slow consumer" in (slow.closed_reason or "")
        await pub.disconnect()

    run(main())


def test_handlers_reply_with_emit_nowait_and_coroutine_handlers(daemon: Any) -> None:
    async def main() -> None:
        ponger = await connect(daemon, "A", echo=False)
        pinger = await connect(daemon, "A", echo=False)
        await ponger.on("ping", lambda m: ponger.emit_nowait("pong", m.data + 1))
        got: List[Any] = []

        async def slow_handler(m: Message) -> None:
            await asyncio.sleep(0)
            got.append(m.data)

        await pinger.on("pong", slow_handler)
        for i in range(3):
            await pinger.emit("ping", i * 10)
        await until(lambda: sorted(got) == [1, 11, 21], "three pongs")
        await ponger.disconnect()
        await pinger.disconnect()

    run(main())
