"""The control functions against a real ncserver: showconfig, showchannel,
showclient, status, showpeers, reloadconfig, and refusals."""

from __future__ import annotations

import os
from typing import Any

import pytest

import netcluster
from netcluster import RequestError
from netcluster.aio import Client

from helpers import run


def test_control_functions_asyncio(daemon: Any) -> None:
    async def main() -> None:
        ctl = await Client.connect("control", socket_dir=daemon.socket_dir)
        a = await Client.connect("A", socket_dir=daemon.socket_dir, name="the-a-client")
        cfg = await ctl.showconfig()
        assert set(cfg["channels"]) >= {"A", "B", "C", "control"}
        assert cfg["socketdir"] == daemon.socket_dir
        summary = await ctl.showchannel()
        names = {row["channel"] for row in summary}
        assert names >= {"A", "B", "C", "control"}
        rows = await ctl.showchannel("A")
        (row,) = [r for r in rows if r["id"] == a.client_id]
        assert row["name"] == "the-a-client" and row["pid"] == os.getpid()
        one = await ctl.showclient("A", a.client_id)
        assert one["id"] == a.client_id and one["channel"] == "A"
        st = await ctl.status()
        assert st["clients"] >= 2 and st["socketdir"] == daemon.socket_dir
        with pytest.raises(RequestError) as e:
            await ctl.showpeers()
        assert "not connected to the network" in str(e.value)
        with pytest.raises(RequestError) as e:
            await ctl.showchannel("nope")
        assert "nope" in str(e.value)
        # Answered on the control channel only.
        with pytest.raises(RequestError) as e:
            await a.status()
        assert "control" in str(e.value)
        # Reload with a config object: channel D appears, C goes.
        changed = await ctl.reloadconfig(
            {"socketdir": daemon.socket_dir, "channels": {"A": {}, "B": {}, "D": {}}}
        )
        assert "D" in changed["added"] and "C" in changed["removed"]
        d = await Client.connect("D", socket_dir=daemon.socket_dir)
        await d.disconnect()
        with pytest.raises(RequestError) as e:
            await ctl.reloadconfig({"channels": {"A": {"propagatetochanels": True}}})
        assert "propagatetochanels" in str(e.value)
        await a.disconnect()
        await ctl.disconnect()

    run(main())


def test_control_functions_blocking(daemon: Any) -> None:
    with netcluster.Client("control", socket_dir=daemon.socket_dir) as ctl:
        assert "channels" in ctl.showconfig()
        assert isinstance(ctl.showchannel("B"), list)
        assert ctl.status()["version"]
        assert ctl.request("nc-control-status")["node"] == ctl.status()["node"]
        with pytest.raises(RequestError) as e:
            ctl.request("nc-control-nonsense")
        assert "unknown control command" in str(e.value)
        with pytest.raises(RequestError):
            ctl.showclient("A", 999999)


def test_control_answers_larger_than_maxmessage(make_daemon: Any) -> None:
    # A showchannel of many clients is larger than a small maxmessage; the
    # client must still read it.
    d = make_daemon({"maxmessage": "1KiB", "channels": {"A": {}}})
    clients = [netcluster.Client("A", socket_dir=d.socket_dir, name="n" * 100) for _ in range(12)]
    try:
        with netcluster.Client("control", socket_dir=d.socket_dir) as ctl:
            assert ctl.max_message == 1024
            rows = ctl.showchannel("A")
            assert len(rows) == 12 and len(str(rows)) > 2 * 1024
    finally:
        for c in clients:
            c.close()
