"""Small helpers shared by the tests: bounded waits, no speed assertions."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

T = TypeVar("T")

#: Upper bound for any single wait in the tests (a loaded machine is slow).
WAIT = 60.0


def run(coro: "Coroutine[Any, Any, T]", timeout: float = 120.0) -> T:
    """Runs a test coroutine with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def until_sync(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


async def wait(aw: "Awaitable[T]", timeout: float = WAIT) -> T:
    return await asyncio.wait_for(aw, timeout)
