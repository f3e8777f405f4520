"""The relay's Redis primary as the stores share it: writes of several stores sent in one round trip,
replication fences (RELAY_REDIS_MIN_REPLICAS) and group-committed scripts."""

from __future__ import annotations

from redis import Redis

from app.core import storage
from app.core.group_commit import GroupCommit


class Primary:
    def __init__(self, redis: Redis, prefix: str, min_replicas: int = 0, replica_wait_ms: int = 0):
        self._redis, self._prefix = redis, prefix
        self._min_replicas, self._wait_ms = min_replicas, replica_wait_ms
        self._batches: dict[str, GroupCommit] = {}

    def pipeline(self, transaction: bool = True):
        """Writes of several stores queued together and sent in one round trip (in MULTI/EXEC unless
        ``transaction`` is False): each store's methods that take ``pipe`` queue theirs on it."""
        return self._redis.pipeline(transaction=transaction)

    def check_writable(self) -> None:
        """Raise the RedisError of a Redis that cannot take a write (a full or read-only one still
        answers PING)."""
        self._redis.set(self._prefix + "readyz", "1", ex=60)

    def mark(self) -> str:
        """Taken before the writes that ``replicated`` will vouch for: which primary takes them (""
        when RELAY_REDIS_MIN_REPLICAS is 0, and nothing is asked)."""
        return storage.primary_id(self._redis) if self._min_replicas > 0 else ""

    def replicated(self, mark: str) -> None:
        """With RELAY_REDIS_MIN_REPLICAS, return only once that many replicas hold every write made
        since ``mark``; raise NotReplicated (a 503) otherwise, also when a failover came in between.
        What an answer of 2xx promises the sender."""
        if self._min_replicas > 0:
            fence = self._prefix + "replication-fence"
            storage.wait_for_replicas(self._redis, fence, self._min_replicas, self._wait_ms, mark)

    def run_replicated(self, name: str, source: str, keys: list[str], args: list) -> object:
        """A script whose write, with RELAY_REDIS_MIN_REPLICAS, is on that many replicas before this
        returns (else NotReplicated, a 503). Calls of the same script by the process's other threads
        meanwhile go in the same pipeline (app/core/group_commit.py)."""
        batch = self._batches.get(name)
        if batch is None:
            # registered once per name (registering hashes the script)
            script = self._redis.register_script(source)

            def send(calls: list) -> list:
                return storage.run_scripts(
                    self._redis, script, calls, self._min_replicas, self._wait_ms
                )

            # setdefault: one per name, whoever wins
            batch = self._batches.setdefault(name, GroupCommit(send))
        return batch.submit((keys, args))
