#!/usr/bin/env python3
"""CPU time per message of every process in the NATS bridge rows (issue 14).

Runs `ncbench nats-bridge --only natsbridge_64` (or `_64k`: the bridge, then the
hand-written NATS client pair, then the async-nats pair, each 1 M x 64 B by
default) against a nats-server started here, and samples every 10 ms the
CPU time (utime + stime of /proc/PID/stat, clock ticks) of the
daemons, the role processes and nats-server. nats-server's time is split
by phase: which subscriber role is alive. Prints µs of CPU per message
per process and the sum per phase.

usage: bench/natscpu.py [TARGET_DIR] [REPS] [SIZE]   (SIZE 64 or 65536;
the suite's full counts: 1 M messages of 64 B, 10 000 of 64 KiB)
"""
import os, socket, subprocess, sys, time, threading

target = sys.argv[1] if len(sys.argv) > 1 else "target/release"
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
size = sys.argv[3] if len(sys.argv) > 3 else "64"
row, count = ("natsbridge_64k", 10_000) if size == "65536" else ("natsbridge_64", 1_000_000)
nats_bin = "/usr/sbin/nats-server"

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")

def cpu_ns(pid):
    # utime + stime of /proc/PID/stat: all threads, exited ones included
    # (a per-thread sum would lose a thread's time when it exits).
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int((int(f[11]) + int(f[12])) * TICK_NS)
    except Exception:
        return 0

def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except Exception:
        return []

def role_of(argv):
    a = [x.decode(errors="replace") for x in argv if x]
    if not a:
        return None
    exe = os.path.basename(a[0])
    if exe == "ncserver":
        cfg = a[-1]
        return "daemon A (publishing)" if "host0" in cfg else "daemon B (receiving)"
    if exe == "ncbench" and len(a) > 1:
        r = a[1]
        sysname = a[a.index("--system") + 1] if "--system" in a else "nc"
        if "--size" not in a or a[a.index("--size") + 1] != size:
            return None
        if r == "bridge-sub":
            return "bridge: subscriber client"
        if r == "pub" and sysname == "nc":
            return "bridge: publisher client"
        if r in ("pub", "sub"):
            return f"{sysname}: {'publisher' if r == 'pub' else 'subscriber'}"
    return None

port = free_port()
nats = subprocess.Popen([nats_bin, "-a", "127.0.0.1", "-p", str(port)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
seen = {}     # pid -> [role, first_ns, last_ns]
nats_by_phase = {}
stop = False

def sampler():
    last_nats = cpu_ns(nats.pid)
    while not stop:
        phase = None
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            pid = int(d)
            if pid == nats.pid:
                continue
            if pid not in seen:
                r = role_of(cmdline(pid))
                if r is None:
                    continue
                seen[pid] = [r, cpu_ns(pid), None]
            ns = cpu_ns(pid)
            if ns:
                seen[pid][2] = ns
        alive = {seen[p][0] for p in seen if os.path.exists(f"/proc/{p}/stat")}
        if "bridge: subscriber client" in alive:
            phase = "bridge"
        elif "nats: subscriber" in alive:
            phase = "nats"
        elif "async-nats: subscriber" in alive:
            phase = "async-nats"
        n = cpu_ns(nats.pid)
        if phase:
            nats_by_phase[phase] = nats_by_phase.get(phase, 0) + (n - last_nats)
        last_nats = n
        time.sleep(0.01)

th = threading.Thread(target=sampler); th.start()
try:
    out = subprocess.run([f"{target}/ncbench", "nats-bridge", "--ncserver", f"{target}/ncserver",
                          "--nats", f"127.0.0.1:{port}", "--only", row, "--reps", str(reps)],
                         capture_output=True, text=True)
    print(out.stdout.strip()); print(out.stderr.strip()[-2000:], file=sys.stderr)
finally:
    stop = True; th.join(); nats.terminate(); nats.wait()

msgs = count * reps
tot = {}
for pid, (role, first, last) in seen.items():
    if last is None:
        continue
    tot[role] = tot.get(role, 0) + (last - first)
phases = {"bridge": ["bridge: publisher client", "daemon A (publishing)", "daemon B (receiving)", "bridge: subscriber client"],
          "nats": ["nats: publisher", "nats: subscriber"],
          "async-nats": ["async-nats: publisher", "async-nats: subscriber"]}
for ph, roles in phases.items():
    s = 0
    print(f"== {ph}")
    for r in roles:
        us = tot.get(r, 0) / 1e3 / msgs
        s += us
        print(f"  {r:32s} {us:7.3f} µs/msg")
    us = nats_by_phase.get(ph, 0) / 1e3 / msgs
    s += us
    print(f"  {'nats-server':32s} {us:7.3f} µs/msg")
    print(f"  {'total':32s} {s:7.3f} µs/msg")
