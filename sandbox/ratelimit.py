"""A fixed-window request limit per API key, answering 429 with Retry-After like the real API."""

from __future__ import annotations

import math

from .store import SandboxStore


class RateLimiter:
    def __init__(self, store: SandboxStore, limit: int, window_seconds: int):
        self._store, self._limit, self._window = store, limit, window_seconds

    def hit(self, key_hash: str) -> tuple[bool, int, int]:
        """Count one request. Returns (allowed, remaining, seconds until the window resets)."""
        now = self._store.clock.now()
        window = int(now // self._window)
        key = self._store.key("ratelimit", key_hash, str(window))
        pipe = self._store.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self._window + 1)
        count = pipe.execute()[0]
        reset = max(1, math.ceil((window + 1) * self._window - now))
        return count <= self._limit, max(0, self._limit - count), reset
