"""A request limit per API key, answering 429 with Retry-After like the real API.

A key's window opens at its first request and lasts ``window_seconds`` on the sandbox clock; in it the key may
make ``limit`` requests. The next request after the window ends opens a new one. Anchoring the window on the
key's first request (not on the epoch) is as strict as a fixed window (the same count per window, bursts at a
window's edge alike), and makes "N calls, then a 429" hold whenever the N+1 calls fit in one window, which a
test can rely on.
"""

from __future__ import annotations

import math

from .store import SandboxStore

# KEYS[1]: the key's window (start, count). ARGV: now, window seconds, expiry in real seconds (cleanup only: the
# sandbox clock never runs slower than real time, so the window has ended by then).
_HIT = """
local start = tonumber(redis.call('HGET', KEYS[1], 'start'))
if not start or tonumber(ARGV[1]) >= start + tonumber(ARGV[2]) then
  start = ARGV[1]
  redis.call('HSET', KEYS[1], 'start', start, 'count', 0)
end
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {count, tostring(start)}
"""


class RateLimiter:
    def __init__(self, store: SandboxStore, limit: int, window_seconds: float):
        self._store, self._limit, self._window = store, limit, window_seconds
        self._hit = store.redis.register_script(_HIT)

    def hit(self, key_hash: str) -> tuple[bool, int, int]:
        """Count one request. Returns (allowed, remaining, seconds until the window resets)."""
        now = self._store.clock.now()
        args = [repr(now), repr(float(self._window)), math.ceil(self._window) + 1]
        count, start = self._hit(keys=[self._store.key("ratelimit", key_hash)], args=args)
        reset = max(1, math.ceil(float(start) + self._window - now))
        return count <= self._limit, max(0, self._limit - count), reset
