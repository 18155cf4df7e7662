"""Who listens to what: the listener table and the state behind subscriptions.

The table maps each event to the tuple of entries that get it (the event's
own listeners, then those of ``*``), rebuilt on every change and swapped in
whole, so the connection dispatches a message with one dict lookup and no
lock while other threads add or remove listeners (changes are rare,
messages are not).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ._names import WILDCARD
from .errors import DisconnectedError
from .message import Message

Sink = Callable[[Message], Any]


class Entry:
    """One listener: where its messages go and whether it fires once."""

    __slots__ = ("id", "event", "sink", "once", "fired")

    def __init__(self, lid: int, event: str, sink: Sink, once: bool) -> None:
        self.id = lid
        self.event = event
        self.sink = sink
        self.once = once
        self.fired = False


class Table:
    """Listeners by event, copy-on-write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._named: Dict[str, List[Entry]] = {}
        self._all: List[Entry] = []
        #: event -> entries that get it (named then ``*``); read lock-free.
        self.by_event: Dict[str, Tuple[Entry, ...]] = {}
        #: entries of ``*``, for events nobody names.
        self.all: Tuple[Entry, ...] = ()

    def _rebuild(self) -> None:
        alls = tuple(self._all)
        self.by_event = {e: tuple(v) + alls for e, v in self._named.items()}
        self.all = alls

    def add(self, entry: Entry) -> bool:
        """Adds ``entry``; True if it is the first for its event (the
        daemon must then be told to send that event)."""
        with self._lock:
            if entry.event == WILDCARD:
                lst = self._all
            else:
                lst = self._named.setdefault(entry.event, [])
            lst.append(entry)
            self._rebuild()
            return len(lst) == 1

    def remove(self, lid: int) -> Optional[Tuple[str, bool]]:
        """Removes the listener ``lid``: ``(event, last)`` if it existed,
        ``last`` when no listener is left for that event."""
        with self._lock:
            for i, e in enumerate(self._all):
                if e.id == lid:
                    del self._all[i]
                    self._rebuild()
                    return WILDCARD, not self._all
            for event, lst in self._named.items():
                for i, e in enumerate(lst):
                    if e.id == lid:
                        del lst[i]
                        last = not lst
                        if last:
                            del self._named[event]
                        self._rebuild()
                        return event, last
            return None

    def events(self) -> List[str]:
        """Every event with listeners (``*`` included), to subscribe again
        after a reconnection."""
        with self._lock:
            ev = list(self._named)
            if self._all:
                ev.append(WILDCARD)
            return ev

    def wants(self, event: str) -> bool:
        """True if anyone listens to ``event``."""
        return bool(self.all) or event in self.by_event

    def clear(self) -> None:
        """Drops every listener."""
        with self._lock:
            self._named.clear()
            self._all.clear()
            self._rebuild()


class SubState:
    """The queue behind one subscription, filled on the connection's thread.

    When it holds ``capacity`` messages the connection stops reading from
    the daemon (which then applies its own backpressure) until the reader
    takes some; nothing is dropped. ``threaded`` subscriptions are read by
    other threads and wake them through a condition variable.
    """

    def __init__(
        self, capacity: int, threaded: bool, pause: Callable[["SubState", bool], None]
    ) -> None:
        self.items: Deque[Message] = deque()
        self.capacity = capacity
        self.ids: List[int] = []
        self.full = False
        self.ended: Optional[BaseException] = None
        self.waiter: Optional[Any] = None  # an asyncio.Future of the reader
        self.cond: Optional[threading.Condition] = threading.Condition() if threaded else None
        self._pause = pause

    def push(self, msg: Message) -> None:
        """Queues one message (connection thread)."""
        cond = self.cond
        if cond is None:
            self.items.append(msg)
            w = self.waiter
            if w is not None:
                self.waiter = None
                if not w.done():
                    w.set_result(None)
        else:
            with cond:
                self.items.append(msg)
                cond.notify()
        if not self.full and len(self.items) >= self.capacity:
            self.full = True
            self._pause(self, True)

    def end(self, why: BaseException) -> None:
        """No more messages will come: the client closed (``why`` says how)."""
        if self.ended is None:
            self.ended = why
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)
        if self.cond is not None:
            with self.cond:
                self.cond.notify_all()

    def took(self) -> None:
        """Called after the reader took a message: resumes reading once the
        queue is half empty."""
        if self.full and len(self.items) <= self.capacity // 2:
            self.full = False
            self._pause(self, False)

    def raise_end(self) -> None:
        """Raises why the subscription ended: StopIteration-like for a
        close by the application, DisconnectedError otherwise."""
        e = self.ended
        if isinstance(e, DisconnectedError) and e.reason.startswith("disconnected by the application"):
            raise _Stop()
        assert e is not None
        raise e


class _Stop(Exception):
    """Internal: the subscription ended because the application closed."""
