"""Storage trouble: the relay's Redis refuses writes (full, a read-only replica) or cannot be reached.

That is a bad day, not a bug. Requests answer 503 with Retry-After and store nothing (app/web), and the
background loops (worker, the intake and delivery lanes, scheduler) back off and go on once Redis is back.
Each occurrence is counted in ``relay_storage_errors_total`` by kind and by the part that met it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from app.core import metrics

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10

MESSAGES = {
    "out_of_memory": "The relay's Redis is full (maxmemory reached, policy noeviction) and refuses writes. "
    "Nothing was stored; retry later. Operators: raise maxmemory or shorten the retention "
    "settings (docs/operations.md, 'When Redis is full').",
    "read_only": "The relay's Redis is a read-only replica (after a failover?) and refuses writes. Nothing was "
    "stored; retry later. Operators: point RELAY_REDIS_URL at the primary.",
    "unreachable": "The relay cannot reach its Redis. Nothing was stored; retry later. Operators: check that "
    "Redis is running and RELAY_REDIS_URL is right.",
    "loading": "The relay's Redis is loading its data after a restart. Nothing was stored; retry in a moment.",
    "not_persisting": "The relay's Redis cannot write its persistence files (MISCONF) and refuses writes. "
    "Nothing was stored; retry later. Operators: check the Redis server's disk.",
    "not_replicated": "The relay's Redis replicas did not confirm the write in time (RELAY_REDIS_MIN_REPLICAS), so "
    "it is not safe yet; retry later (a repeated webhook is recognised). Operators: check the "
    "replicas and their lag.",
}
IN_SHORT = {
    "out_of_memory": "its storage is full",
    "read_only": "its storage is read-only",
    "unreachable": "it cannot reach its storage",
    "loading": "its storage is starting up",
    "not_persisting": "its storage cannot save",
    "not_replicated": "its storage replicas lag behind",
}
"""The same, in a few words (a Slack answer)."""

T = TypeVar("T")


class NotReplicated(RedisError):
    """Fewer replicas than asked for confirmed a write in time."""


class DoneNotReplicated(NotReplicated):
    """The work is done on the primary, its replicas have not confirmed it: ``done`` is what was made
    (an Idempotency-Key's retry gets its answer, not a second run)."""

    def __init__(self, done: object, cause: NotReplicated):
        super().__init__(str(cause))
        self.done = done


def trouble(exc: BaseException) -> str | None:
    """The kind of storage trouble ``exc`` is, or None when it is something else (a bug, a wrong type)."""
    text = str(exc)
    # ours, or the server's min-replicas-to-write
    if isinstance(exc, NotReplicated) or "NOREPLICAS" in text:
        return "not_replicated"
    if isinstance(exc, OutOfMemoryError) or "OOM command not allowed" in text:
        return "out_of_memory"
    if isinstance(exc, ReadOnlyError) or "READONLY" in text:
        return "read_only"
    if isinstance(exc, BusyLoadingError):
        return "loading"
    if isinstance(exc, ConnectionError | TimeoutError):
        return "unreachable"
    if isinstance(exc, ResponseError) and "MISCONF" in text:
        return "not_persisting"
    return None


_LOG_EVERY_SECONDS = 10.0
_last_logged: dict[tuple[str, str], float] = {}


def count(kind: str, where: str, exc: BaseException | None = None) -> None:
    """Count one occurrence; log it too, at most once every 10 s per kind and part (an outage under load
    would otherwise write a line per request)."""
    metrics.STORAGE_ERRORS.labels(kind, where).inc()
    now = time.monotonic()
    if (
        exc is not None
        and now - _last_logged.get((kind, where), -_LOG_EVERY_SECONDS) >= _LOG_EVERY_SECONDS
    ):
        _last_logged[(kind, where)] = now
        log.warning("%s: storage trouble (%s): %s", where, kind, exc)


class Backoff:
    """For a loop that must go on through storage trouble: how long to pause after each failure (growing,
    with jitter, up to ``cap``), with one log line when trouble starts and one when it is over."""

    def __init__(self, where: str, first: float = 0.5, cap: float = 15.0):
        self._where, self._first, self._cap = where, first, cap
        self._failures = 0

    def failed(self, exc: RedisError) -> float:
        kind = trouble(exc) or "other"
        count(kind, self._where)
        if not self._failures:
            log.warning("%s: storage trouble (%s), backing off: %s", self._where, kind, exc)
        self._failures += 1
        ceiling = min(self._cap, self._first * 2 ** (self._failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    def succeeded(self) -> None:
        if self._failures:
            log.info(
                "%s: storage is back after %d failed tr%s",
                self._where,
                self._failures,
                "y" if self._failures == 1 else "ies",
            )
        self._failures = 0


def persist(
    write: Callable[[], T],
    where: str,
    patience: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``write`` until Redis takes it (storage trouble only, up to ``patience`` seconds): for an outcome
    that has already happened outside (a file delivered, a job the API accepted), where failing to record
    it would make the relay do it again."""
    backoff, deadline = Backoff(where), time.monotonic() + patience
    while True:
        try:
            value = write()
        except RedisError as exc:
            if trouble(exc) is None or time.monotonic() >= deadline:
                raise
            sleep(backoff.failed(exc))
            continue
        backoff.succeeded()
        return value
