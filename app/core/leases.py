"""A lease: a Redis lock that lives only as long as the process holding it does.

A plain lock with a long expiry (long enough for the slowest holder) keeps the work waiting that long
when its holder is SIGKILLed. A lease instead expires after a short ``seconds`` and is renewed by a thread
of its holder every third of that; a dead holder stops renewing, and the work is free again within one
lease. redis-py's Lock does the owner-checked acquire, extend and release (its token must not be
thread-local: the renewing thread is another one)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from redis import Redis
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def lease(
    redis: Redis, key: str, seconds: float, renew_every: float | None = None
) -> Iterator[bool]:
    """Hold ``key`` while the block runs, if no one else does: yields False (and holds nothing) when another
    process holds it. Renewed every ``renew_every`` seconds (a third of the lease unless told: a test renews
    more often, so that a starved thread cannot lose it, and sees the renewals sooner)."""
    lock = redis.lock(key, timeout=seconds, blocking=False, thread_local=False)
    if not lock.acquire():
        yield False
        return
    done = threading.Event()
    renewer = threading.Thread(
        target=_renew,
        args=(lock, renew_every or seconds / 3, done),
        name=f"lease {key}",
        daemon=True,
    )
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join()
        # it expired (Redis was away past a lease): nothing to free
        with contextlib.suppress(LockError, RedisError):
            lock.release()


def _renew(lock, every: float, done: threading.Event) -> None:
    while not done.wait(every):
        try:
            lock.reacquire()
        except LockError:
            log.warning(
                "lease %s was lost (its holder was too slow to renew it); another process may take it",
                lock.name,
            )
            return
        except RedisError:  # a missed renewal only shortens the lease; the next one may reach Redis
            continue
