"""A sliding-window counter per key (a client address), kept in the worker's memory.

Each worker process counts on its own, so with W workers a key gets up to W times the
limit: a brake on guessing and flooding, not an exact quota (that needs shared state,
e.g. a proxy in front of the nodes).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["SlidingWindowCounter"]


class SlidingWindowCounter:
    """At most `limit` events per key in any `window` seconds.

    Remembers at most `max_keys` keys, forgetting the least recently seen first, so a
    flood of addresses costs bounded memory.
    """

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise ValueError("limit, window and max_keys must be positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            events = deque()
            self._events[key] = events
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def _wait(self, events: deque[float], now: float) -> int:
        return max(1, math.ceil(events[0] + self.window - now))

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until `key` may act again, or None if it may now."""
        with self._lock:
            now = self._clock()
            events = self._recent(key, now)
            return self._wait(events, now) if len(events) >= self.limit else None

    def record(self, key: str) -> None:
        """Count one event for `key`."""
        with self._lock:
            now = self._clock()
            self._recent(key, now).append(now)

    def take(self, key: str) -> int | None:
        """Count an event if `key` is under its limit (None); else the seconds to wait."""
        with self._lock:
            now = self._clock()
            events = self._recent(key, now)
            if len(events) >= self.limit:
                return self._wait(events, now)
            events.append(now)
            return None
