"""The blocking face against a real ncserver: handlers on the client's
thread, subscriptions as iterators, thread-safe emits, reconnection, and
what a handler may and may not do."""

from __future__ import annotations

import threading
from typing import Any, List

import pytest

import netcluster
from netcluster import NetclusterError

from helpers import until_sync


def test_emit_on_once_remove_and_handler_thread(daemon: Any) -> None:
    with netcluster.Client("A", socket_dir=daemon.socket_dir) as a, netcluster.Client.connect(
        "B", socket_dir=daemon.socket_dir
    ) as b:
        got: List[Any] = []
        threads: List[str] = []
        once: List[Any] = []

        def handler(m: netcluster.Message) -> None:
            got.append((m.channel, m.data))
            threads.append(threading.current_thread().name)

        lid = b.on("ev", handler)
        b.once("ev", lambda m: once.append(m.data))
        a.emit("ev", {"k": 1})
        a.emit("ev", [2])
        a.flush()
        until_sync(lambda: len(got) == 2, "two deliveries")
        assert got == [("A", {"k": 1}), ("A", [2])]
        assert once == [{"k": 1}]
        assert set(threads) == {"netcluster-B"}
        assert b.remove_listener(lid)
        assert not b.remove_listener(lid)
        assert b.state == "connected" and b.client_id > 0


def test_subscription_iterator_and_get(daemon: Any) -> None:
    with netcluster.Client("A", socket_dir=daemon.socket_dir, echo=False) as a:
        with netcluster.Client("A", socket_dir=daemon.socket_dir) as b:
            with b.subscribe("s1", "s2") as sub:
                for i in range(20):
                    a.emit("s1" if i % 2 else "s2", i)
                a.flush()
                seen = []
                for m in sub:
                    seen.append(m.data)
                    if len(seen) == 20:
                        break
                assert seen == list(range(20))
                assert sub.get(timeout=0.05) is None
            # Closed subscription: nothing more is routed to it.
            a.emit_bytes("s1", b"\x00raw")
            a.flush()
            with b.subscribe("raw") as raw:
                a.emit_bytes("raw", b"\x00\xffbytes")
                m = raw.get(timeout=30)
                assert m is not None and m.bytes() == b"\x00\xffbytes"


def test_threads_emit_concurrently_in_order(daemon: Any) -> None:
    per_thread = 5000
    nthreads = 4
    with netcluster.Client("A", socket_dir=daemon.socket_dir, echo=False) as a, netcluster.Client(
        "A", socket_dir=daemon.socket_dir
    ) as b:
        last = [-1] * nthreads
        count = [0]
        bad: List[str] = []

        def handler(m: netcluster.Message) -> None:
            t, i = m.data
            if i != last[t] + 1:
                bad.append(f"thread {t}: {i} after {last[t]}")
            last[t] = i
            count[0] += 1

        b.on("t", handler)

        def work(t: int) -> None:
            for i in range(per_thread):
                a.emit("t", [t, i])

        ts = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        a.flush()
        until_sync(lambda: count[0] == per_thread * nthreads, "all messages")
        assert bad == []


def test_handler_may_emit_but_not_wait(daemon: Any) -> None:
    with netcluster.Client("A", socket_dir=daemon.socket_dir) as a:
        errors: List[str] = []
        pongs: List[Any] = []

        def ping(m: netcluster.Message) -> None:
            a.emit("pong", m.data)  # works on the client's thread
            try:
                a.flush()
            except NetclusterError as e:
                errors.append(str(e))

        a.on("ping", ping)
        a.on("pong", lambda m: pongs.append(m.data))
        a.emit("ping", 7)
        until_sync(lambda: pongs == [7] and len(errors) == 1, "pong and refused flush")
        assert "inside a handler" in errors[0]


def test_blocking_reconnects_and_control(daemon: Any) -> None:
    with netcluster.Client("B", socket_dir=daemon.socket_dir) as b:
        got: List[Any] = []
        b.on("r", lambda m: got.append(m.data))
        daemon.restart()
        until_sync(lambda: b.state == "connected" and b.client_id != 0, "reconnection")
        with netcluster.Client("control", socket_dir=daemon.socket_dir) as ctl:
            status = ctl.status()
            assert status["socketdir"] == daemon.socket_dir
        with netcluster.Client("A", socket_dir=daemon.socket_dir) as a:
            a.emit("r", "after restart")
            a.flush()
        until_sync(lambda: got == ["after restart"], "delivery after restart")


def test_closed_client_raises(daemon: Any) -> None:
    a = netcluster.Client("A", socket_dir=daemon.socket_dir)
    a.close()
    a.close()  # idempotent
    with pytest.raises(netcluster.DisconnectedError):
        a.emit("x", 1)
    with pytest.raises(netcluster.DisconnectedError) as e:
        a.on("x", print)
    assert "closed" in str(e.value)


def test_no_such_channel_blocking(daemon: Any) -> None:
    with pytest.raises(netcluster.NoSuchChannelError) as e:
        netcluster.Client("missing", socket_dir=daemon.socket_dir)
    assert "netcluster-missing" in str(e.value)
    assert threading.active_count() < 50  # the failed client's thread is gone


def test_hundred_thousand_in_order_blocking(daemon: Any) -> None:
    n = 100_000
    with netcluster.Client("A", socket_dir=daemon.socket_dir, echo=False) as a, netcluster.Client(
        "B", socket_dir=daemon.socket_dir
    ) as b:
        with b.subscribe("burst") as sub:
            done = threading.Event()
            got = [0]
            bad: List[str] = []

            def read() -> None:
                for m in sub:
                    i = int.from_bytes(m.payload[:8], "little")
                    if i != got[0]:
                        bad.append(f"got {i}, expected {got[0]}")
                        break
                    got[0] += 1
                    if got[0] == n:
                        break
                done.set()

            reader = threading.Thread(target=read)
            reader.start()
            for i in range(n):
                a.emit_bytes("burst", i.to_bytes(8, "little"))
            a.flush()
            assert done.wait(180), f"only {got[0]} of {n} arrived"
            reader.join()
            assert bad == [] and got[0] == n
