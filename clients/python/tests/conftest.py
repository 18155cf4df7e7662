"""Fixtures: a real ``ncserver`` in a temporary socket directory.

The binary is ``$NCSERVER``, else the repository's ``target/debug/ncserver``
(build it with ``cargo build --bin ncserver``). Each daemon gets its own
config file and socket directory under pytest's ``tmp_path`` and is stopped
(SIGTERM, then SIGKILL) when the test ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
#: Generous bound for a daemon to come up on a loaded machine.
START_TIMEOUT = 30.0


def ncserver_binary() -> str:
    path = os.environ.get("NCSERVER") or str(REPO / "target" / "debug" / "ncserver")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"ncserver not found at {path}: build it with `cargo build --bin ncserver` "
            f"or point NCSERVER at it"
        )
    return path


DEFAULT_CONFIG: Dict[str, Any] = {
    "channels": {
        "A": {"propagatetochannels": "^B$"},
        "B": {},
        "C": {},
    }
}


class Daemon:
    """One ncserver process with its own config and socket directory."""

    def __init__(self, base: Path, config: Dict[str, Any]) -> None:
        self.base = base
        self.socket_dir = str(base / "s")
        os.makedirs(self.socket_dir, exist_ok=True)
        self.config = dict(config)
        self.config["socketdir"] = self.socket_dir
        self.config_path = base / "config.json"
        self.config_path.write_text(json.dumps(self.config))
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.log = base / "ncserver.log"
        self.start()

    def channels(self) -> List[str]:
        return list(self.config.get("channels", {})) + ["control"]

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [ncserver_binary(), str(self.config_path)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        for ch in self.channels():
            path = os.path.join(self.socket_dir, "netcluster-" + ch)
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"ncserver exited: {self.log.read_text()}")
                if os.path.exists(path) and self._accepts(path):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ncserver did not create {path}: {self.log.read_text()}")
                time.sleep(0.02)

    @staticmethod
    def _accepts(path: str) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path, DEFAULT_CONFIG)
    yield d
    d.stop()


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Any]:
    made: List[Daemon] = []

    def make(config: Dict[str, Any], name: str = "d") -> Daemon:
        base = tmp_path / name
        base.mkdir()
        d = Daemon(base, config)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
