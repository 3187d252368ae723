"""A short-lived in-process cache of pre-signed OCSP responses, in each web worker.

Most OCSP traffic asks again and again about the same certificates, without a nonce,
and is answered with a response that was signed ahead of time. Keeping those answers
in memory for a fraction of a second spares the database read behind each one while
still showing a revocation made in any process within `ttl` seconds: a revocation
replaces the stored response, and no cached copy outlives `ttl`.

Only responses that are safe to share are cached: successful, status good or revoked,
no nonce (the web layer decides, from the response it would send).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping

__all__ = ["CachedOcspResponse", "OcspResponseCache"]

DEFAULT_TTL_SECONDS = 0.5
DEFAULT_MAX_ENTRIES = 50_000


@dataclasses.dataclass(frozen=True)
class CachedOcspResponse:
    der: bytes
    headers: Mapping[str, str]


class OcspResponseCache:
    """Responses by the exact request bytes, each kept for at most `ttl` seconds."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ValueError("ttl and max_entries must be positive")
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, tuple[float, CachedOcspResponse]] = {}
        self._lock = threading.Lock()

    def get(self, request_der: bytes) -> CachedOcspResponse | None:
        entry = self._entries.get(request_der)
        if entry is None:
            return None
        expires_at, response = entry
        if self._clock() >= expires_at:
            with self._lock:
                if self._entries.get(request_der) is entry:
                    del self._entries[request_der]
            return None
        return response

    def put(self, request_der: bytes, response: CachedOcspResponse) -> None:
        now = self._clock()
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._evict_expired(now)
                if len(self._entries) >= self._max_entries:
                    # Under a flood of distinct requests, start afresh rather than
                    # spend each request searching for the oldest entry.
                    self._entries.clear()
            self._entries[request_der] = (now + self._ttl, response)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _evict_expired(self, now: float) -> None:
        expired = [
            key for key, (expires_at, _) in self._entries.items() if expires_at <= now
        ]
        for key in expired:
            del self._entries[key]
