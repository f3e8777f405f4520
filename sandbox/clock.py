"""An injectable clock: real time plus an offset kept in Redis, so tests can move time forward."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from redis import Redis


class Clock:
    def __init__(self, redis: Redis, key: str):
        self._redis = redis
        self._key = key

    def now(self) -> float:
        offset = self._redis.get(self._key)
        return time.time() + (float(offset) if offset else 0.0)

    def advance(self, seconds: float) -> float:
        return float(self._redis.incrbyfloat(self._key, seconds))


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
