"""An injectable clock: real time plus an offset kept in Redis, so tests can move time forward."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from redis import Redis

_OFFSET_FRESH_SECONDS = 0.5
"""How long the offset read from Redis is trusted: a move made through this clock is seen at once, one made by
another process sharing the store within this long. Saves a round trip on nearly every state change."""


class Clock:
    def __init__(self, redis: Redis, key: str):
        self._redis = redis
        self._key = key
        self._offset = 0.0
        self._read_at = float("-inf")  # time.monotonic() of the last read of the offset
        self._moves = 0  # advance() calls: a read that started before one is stale
        self._lock = threading.Lock()

    def now(self) -> float:
        if time.monotonic() - self._read_at > _OFFSET_FRESH_SECONDS:
            moves, read_at = self._moves, time.monotonic()
            offset = self._redis.get(self._key)
            with self._lock:
                if moves == self._moves:
                    self._offset, self._read_at = float(offset) if offset else 0.0, read_at
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset = float(self._redis.incrbyfloat(self._key, seconds))
            self._read_at, self._moves = time.monotonic(), self._moves + 1
            return self._offset


def iso(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
