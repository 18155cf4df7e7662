"""Python clients side by side: netcluster (this package), redis-py
(asyncio) against redis-server and nats-py against nats-server, each
through its own broker on this machine, in one run.

Rows: 1->1 publish->subscribe throughput at 16 B and 1 KiB, and the round
trip (ping-pong) of a 16 B message. Every role (subscriber, publisher,
ponger, pinger) is a separate process running this file. Every payload
starts with its 64-bit sequence number; subscribers check each one (a gap
or step back fails the run) and the count. Throughput = messages / (last
message at the subscriber - publisher's first send), both on
CLOCK_MONOTONIC (time.monotonic), shared by the processes.

    python bench.py suite --nc-dir DIR --nats nats://127.0.0.1:PORT --redis-socket PATH
                          [--scale full|tiny] [--json OUT] [--doc PERFORMANCE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

#: Each role gives up after this many seconds (the suite stays bounded).
ROLE_DEADLINE = 180.0
SCALES = {
    "full": {"n16": 200_000, "n1k": 100_000, "warm": 500, "rtt": 5_000},
    "tiny": {"n16": 2_000, "n1k": 1_000, "warm": 50, "rtt": 200},
}
SYSTEMS = ("netcluster", "nats-py", "redis-py")
MARK_BEGIN = "<!-- python-bench:begin -->"
MARK_END = "<!-- python-bench:end -->"


def payload(seq: int, size: int) -> bytes:
    return seq.to_bytes(8, "little") + b"\xab" * (size - 8)


class Checker:
    """Counts and checks the sequence of received payloads."""

    def __init__(self, n: int, size: int) -> None:
        self.n = n
        self.size = size
        self.next = 0
        self.last_t = 0.0
        self.done: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()

    def check(self, p: Any) -> None:
        if len(p) != self.size:
            self.fail(f"message {self.next}: {len(p)} bytes, expected {self.size}")
        seq = int.from_bytes(p[:8], "little")
        if seq != self.next:
            self.fail(f"expected message {self.next}, got {seq} (lost, reordered or duplicated)")
        self.next += 1
        if self.next == self.n:
            self.last_t = time.monotonic()
            if not self.done.done():
                self.done.set_result(None)

    def fail(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(why))


def ready() -> None:
    print("ready", flush=True)


def report(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


# --- netcluster -------------------------------------------------------------


async def nc_connect(a: Any) -> Any:
    from netcluster.aio import Client

    return await Client.connect("bench", socket_dir=a.nc_dir, echo=False, name="pybench")


async def nc_sub(a: Any) -> None:
    c = await nc_connect(a)
    chk = Checker(a.n, a.size)
    check = chk.check
    await c.on("bench", lambda m: check(m.payload))
    ready()
    await chk.done
    report(last=chk.last_t, count=chk.next)


async def nc_pub(a: Any) -> None:
    c = await nc_connect(a)
    msgs = [payload(i, a.size) for i in range(a.n)]
    emit = c.emit_bytes
    t0 = time.monotonic()
    for p in msgs:
        await emit("bench", p)
    await c.flush()
    report(first=t0)
    await c.disconnect()


async def nc_pong(a: Any) -> None:
    c = await nc_connect(a)
    emit = c.emit_bytes_nowait
    await c.on("ping", lambda m: emit("pong", m.payload))
    ready()
    await asyncio.sleep(ROLE_DEADLINE)


async def nc_ping(a: Any) -> None:
    c = await nc_connect(a)
    loop = asyncio.get_running_loop()
    box: List[Any] = [None]
    await c.on("pong", lambda m: box[0].set_result(m.bytes()))
    rtts = []
    for i in range(a.warm + a.n):
        box[0] = loop.create_future()
        t = time.perf_counter()
        await c.emit_bytes("ping", payload(i, 16))
        got = await box[0]
        dt = time.perf_counter() - t
        if int.from_bytes(got[:8], "little") != i:
            raise RuntimeError(f"pong {i} carried the wrong sequence")
        if i >= a.warm:
            rtts.append(dt)
    report(rtts=rtts)


# --- nats-py ----------------------------------------------------------------


async def nats_connect(a: Any) -> Any:
    import nats

    return await nats.connect(a.nats, no_echo=True, allow_reconnect=False)


async def nats_sub(a: Any) -> None:
    nc = await nats_connect(a)
    chk = Checker(a.n, a.size)
    check = chk.check

    async def cb(msg: Any) -> None:
        check(msg.data)

    # Limits raised so that nats-py never drops a message as a slow consumer.
    await nc.subscribe("bench", cb=cb, pending_msgs_limit=10_000_000, pending_bytes_limit=4 << 30)
    await nc.flush()
    ready()
    await chk.done
    report(last=chk.last_t, count=chk.next)


async def nats_pub(a: Any) -> None:
    nc = await nats_connect(a)
    msgs = [payload(i, a.size) for i in range(a.n)]
    pub = nc.publish
    t0 = time.monotonic()
    for p in msgs:
        await pub("bench", p)
    await nc.flush()
    report(first=t0)
    await nc.close()


async def nats_pong(a: Any) -> None:
    nc = await nats_connect(a)

    async def cb(msg: Any) -> None:
        await nc.publish("pong", msg.data)

    await nc.subscribe("ping", cb=cb)
    await nc.flush()
    ready()
    await asyncio.sleep(ROLE_DEADLINE)


async def nats_ping(a: Any) -> None:
    nc = await nats_connect(a)
    loop = asyncio.get_running_loop()
    box: List[Any] = [None]

    async def cb(msg: Any) -> None:
        box[0].set_result(msg.data)

    await nc.subscribe("pong", cb=cb)
    await nc.flush()
    rtts = []
    for i in range(a.warm + a.n):
        box[0] = loop.create_future()
        t = time.perf_counter()
        await nc.publish("ping", payload(i, 16))  # its flusher task writes it at once
        got = await box[0]
        dt = time.perf_counter() - t
        if int.from_bytes(got[:8], "little") != i:
            raise RuntimeError(f"pong {i} carried the wrong sequence")
        if i >= a.warm:
            rtts.append(dt)
    report(rtts=rtts)


# --- redis-py (asyncio) -------------------------------------------------------

#: PUBLISH commands per pipeline round trip (a publisher without pipelining
#: would measure its own round trips).
REDIS_BATCH = 1000


def redis_conn(a: Any) -> Any:
    import redis.asyncio as redis

    return redis.Redis(unix_socket_path=a.redis_socket)


async def redis_sub(a: Any) -> None:
    r = redis_conn(a)
    ps = r.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe("bench")
    chk = Checker(a.n, a.size)
    ready()

    async def loop() -> None:
        while not chk.done.done():
            m = await ps.get_message(ignore_subscribe_messages=True, timeout=None)
            if m is not None:
                chk.check(m["data"])

    task = asyncio.ensure_future(loop())
    await chk.done
    task.cancel()
    report(last=chk.last_t, count=chk.next)


async def redis_pub(a: Any) -> None:
    r = redis_conn(a)
    msgs = [payload(i, a.size) for i in range(a.n)]
    t0 = time.monotonic()
    for b in range(0, a.n, REDIS_BATCH):
        pipe = r.pipeline(transaction=False)
        for p in msgs[b : b + REDIS_BATCH]:
            pipe.publish("bench", p)
        counts = await pipe.execute()
        if any(c != 1 for c in counts):
            raise RuntimeError(f"PUBLISH reached {counts[0]} subscribers, expected 1")
    report(first=t0)
    await r.aclose()


async def redis_pong(a: Any) -> None:
    r = redis_conn(a)
    pub = redis_conn(a)
    ps = r.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe("ping")
    ready()
    deadline = time.monotonic() + ROLE_DEADLINE
    while time.monotonic() < deadline:
        m = await ps.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if m is not None:
            await pub.publish("pong", m["data"])


async def redis_ping(a: Any) -> None:
    r = redis_conn(a)
    pub = redis_conn(a)
    ps = r.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe("pong")
    rtts = []
    for i in range(a.warm + a.n):
        t = time.perf_counter()
        await pub.publish("ping", payload(i, 16))
        while True:
            m = await ps.get_message(ignore_subscribe_messages=True, timeout=None)
            if m is not None:
                break
        dt = time.perf_counter() - t
        if int.from_bytes(m["data"][:8], "little") != i:
            raise RuntimeError(f"pong {i} carried the wrong sequence")
        if i >= a.warm:
            rtts.append(dt)
    report(rtts=rtts)


ROLES = {
    ("netcluster", "sub"): nc_sub,
    ("netcluster", "pub"): nc_pub,
    ("netcluster", "pong"): nc_pong,
    ("netcluster", "ping"): nc_ping,
    ("nats-py", "sub"): nats_sub,
    ("nats-py", "pub"): nats_pub,
    ("nats-py", "pong"): nats_pong,
    ("nats-py", "ping"): nats_ping,
    ("redis-py", "sub"): redis_sub,
    ("redis-py", "pub"): redis_pub,
    ("redis-py", "pong"): redis_pong,
    ("redis-py", "ping"): redis_ping,
}


def run_role(a: Any) -> None:
    role = ROLES[(a.system, a.role)]

    async def bounded() -> None:
        try:
            await asyncio.wait_for(role(a), ROLE_DEADLINE)
        except asyncio.TimeoutError:
            if a.role != "pong":
                raise SystemExit(f"{a.system} {a.role}: no result within {ROLE_DEADLINE} s")

    asyncio.run(bounded())


# --- orchestration ----------------------------------------------------------


def spawn(a: Any, system: str, role: str, n: int, size: int, warm: int = 0) -> "subprocess.Popen[str]":
    cmd = [sys.executable, os.path.abspath(__file__), "role", system, role,
           "--n", str(n), "--size", str(size), "--warm", str(warm),
           "--nc-dir", a.nc_dir, "--nats", a.nats, "--redis-socket", a.redis_socket]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def wait_ready(p: "subprocess.Popen[str]", what: str) -> None:
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        raise SystemExit(f"{what}: did not start ({line!r})")


def result(p: "subprocess.Popen[str]", what: str) -> Dict[str, Any]:
    try:
        out, _ = p.communicate(timeout=ROLE_DEADLINE + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        raise SystemExit(f"{what}: timed out")
    if p.returncode != 0:
        raise SystemExit(f"{what}: failed (exit {p.returncode})")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def throughput(a: Any, system: str, n: int, size: int) -> float:
    sub = spawn(a, system, "sub", n, size)
    wait_ready(sub, f"{system} subscriber")
    pub = spawn(a, system, "pub", n, size)
    first = result(pub, f"{system} publisher")["first"]
    got = result(sub, f"{system} subscriber")
    if got["count"] != n:
        raise SystemExit(f"{system}: {got['count']} of {n} messages arrived")
    return n / (got["last"] - first)


def round_trip(a: Any, system: str, n: int, warm: int) -> Dict[str, float]:
    pong = spawn(a, system, "pong", 0, 16)
    wait_ready(pong, f"{system} ponger")
    try:
        rtts = sorted(result(spawn(a, system, "ping", n, 16, warm), f"{system} pinger")["rtts"])
    finally:
        pong.kill()
        pong.wait()

    def q(p: float) -> float:
        return rtts[min(len(rtts) - 1, max(0, int(round(p * len(rtts))) - 1))] * 1e6

    return {"p50_us": q(0.50), "p99_us": q(0.99)}


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"load average {load:.1f} at the start")


def versions() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for dist, name in (("netcluster", "netcluster"), ("nats-py", "nats-py"), ("redis", "redis-py")):
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def table(res: Dict[str, Any]) -> str:
    rows = ["| client (broker) | 1→1 16 B msg/s | 1→1 1 KiB msg/s | round trip p50 µs | p99 µs |",
            "|---|---:|---:|---:|---:|"]
    brokers = {"netcluster": "ncserver", "nats-py": "nats-server", "redis-py": "redis-server"}
    for s in SYSTEMS:
        r = res["systems"][s]
        rows.append(f"| {s} {res['versions'].get(s, '')} ({brokers[s]}) | {r['t16']:,.0f} | "
                    f"{r['t1k']:,.0f} | {r['rtt']['p50_us']:.0f} | {r['rtt']['p99_us']:.0f} |")
    nc = res["systems"]["netcluster"]
    best16 = max(res["systems"][s]["t16"] for s in SYSTEMS[1:])
    best1k = max(res["systems"][s]["t1k"] for s in SYSTEMS[1:])
    best_rtt = min(res["systems"][s]["rtt"]["p50_us"] for s in SYSTEMS[1:])
    rows.append("")
    rows.append(
        f"netcluster ÷ the faster peer: {nc['t16'] / best16:.2f}× at 16 B, "
        f"{nc['t1k'] / best1k:.2f}× at 1 KiB (target ≥ 2×); round trip p50 "
        f"{nc['rtt']['p50_us']:.0f} µs vs the best peer's {best_rtt:.0f} µs (target: no worse)."
    )
    return "\n".join(rows)


def suite(a: Any) -> None:
    sc = SCALES[a.scale]
    res: Dict[str, Any] = {"machine": machine(), "scale": a.scale, "versions": versions(),
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "systems": {}}
    for s in SYSTEMS:
        r: Dict[str, Any] = {}
        r["t16"] = throughput(a, s, sc["n16"], 16)
        r["t1k"] = throughput(a, s, sc["n1k"], 1024)
        r["rtt"] = round_trip(a, s, sc["rtt"], sc["warm"])
        res["systems"][s] = r
        print(f"{s}: 16 B {r['t16']:,.0f} msg/s, 1 KiB {r['t1k']:,.0f} msg/s, "
              f"rtt p50 {r['rtt']['p50_us']:.0f} µs p99 {r['rtt']['p99_us']:.0f} µs", file=sys.stderr)
    text = table(res)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if a.doc:
        section = (f"{MARK_BEGIN}\nLatest run: {res['date']}, scale {a.scale}; {res['machine']}. "
                   f"{sc['n16']:,} messages at 16 B, {sc['n1k']:,} at 1 KiB, {sc['rtt']:,} round trips "
                   f"after {sc['warm']} warm-up.\n\n{text}\n{MARK_END}")
        doc = open(a.doc).read()
        if MARK_BEGIN in doc:
            doc = re.sub(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), lambda _: section, doc, flags=re.S)
        else:
            doc = doc.rstrip("\n") + "\n\n" + section + "\n"
        with open(a.doc, "w") as f:
            f.write(doc)


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("suite", "role"):
        p = sub.add_parser(name)
        if name == "role":
            p.add_argument("system", choices=SYSTEMS)
            p.add_argument("role", choices=("sub", "pub", "pong", "ping"))
            p.add_argument("--n", type=int, required=True)
            p.add_argument("--size", type=int, required=True)
            p.add_argument("--warm", type=int, default=0)
        else:
            p.add_argument("--scale", choices=sorted(SCALES), default="full")
            p.add_argument("--json")
            p.add_argument("--doc")
        p.add_argument("--nc-dir", required=True)
        p.add_argument("--nats", required=True)
        p.add_argument("--redis-socket", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "role":
        run_role(a)
    else:
        suite(a)


if __name__ == "__main__":
    main()
