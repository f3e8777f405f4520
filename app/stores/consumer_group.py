"""One process's reading of a Redis stream through a consumer group: the entries a lane (app.work.lane) takes,
runs and lets go. An entry stays pending until its work is done; one whose reader died is claimed by another
once idle for a lease, and a reader keeps the entries it is running from looking idle."""

from __future__ import annotations

from redis import Redis
from redis.exceptions import ResponseError


def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """The consumer group, created with its stream if need be (again after Redis lost both)."""
    try:
        redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def let_go(redis: Redis, stream: str, group: str, entry_id: str) -> None:
    """The entry's work is done: acknowledged and deleted (the stream holds only what is unfinished)."""
    pipe = redis.pipeline()
    let_go_on(pipe, stream, group, entry_id)
    pipe.execute()


def let_go_on(pipe, stream: str, group: str, entry_id: str) -> None:
    """let_go, queued on ``pipe`` (with the writes that record the entry's work done)."""
    pipe.xack(stream, group, entry_id)
    pipe.xdel(stream, entry_id)


Entry = tuple[str, dict]


class ConsumerGroup:
    def __init__(self, redis: Redis, stream: str, group: str, consumer: str):
        self._redis, self.stream, self.group, self.consumer = redis, stream, group, consumer

    def ensure(self) -> None:
        """The group, made with its stream if need be (again after Redis lost both)."""
        ensure_group(self._redis, self.stream, self.group)

    def claim_idle(self, lease_ms: int, count: int) -> list[Entry]:
        """Up to ``count`` entries other readers took and left idle for ``lease_ms``, now this reader's."""
        _, claimed, _ = self._redis.xautoclaim(
            self.stream, self.group, self.consumer, lease_ms, start_id="0-0", count=count
        )
        return claimed

    def read_new(self, count: int, block_ms: int | None) -> list[Entry]:
        """Up to ``count`` entries no reader has taken yet, waiting up to ``block_ms`` for one."""
        read = self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return [entry for _, entries in read or [] for entry in entries]

    def renew(self, entry_ids: list[str]) -> None:
        """The entries this reader is running look busy again: no other reader claims them for a lease."""
        self._redis.xclaim(self.stream, self.group, self.consumer, 0, entry_ids, justid=True)

    def release(self, entry_ids: list[str]) -> None:
        """Entries taken but not started look idle for longer than any lease: the next reader's claim
        takes them at once instead of after a lease."""
        self._redis.xclaim(
            self.stream, self.group, self.consumer, 0, entry_ids, idle=2**31, justid=True
        )

    def let_go(self, entry_id: str) -> None:
        """The entry's work is done: acknowledged and deleted."""
        let_go(self._redis, self.stream, self.group, entry_id)

    def let_go_on(self, pipe, entry_id: str) -> None:
        """let_go, queued on ``pipe`` with the writes that record the work done."""
        let_go_on(pipe, self.stream, self.group, entry_id)


def trim_before(redis: Redis, stream: str, before: float) -> int:
    """Remove the stream's entries older than ``before`` (an entry id starts with its time in ms)."""
    return int(redis.xtrim(stream, minid=f"{int(before * 1000)}-0", approximate=False))


def drop_idle_consumers(redis: Redis, stream: str, group: str, idle_seconds: float) -> list[str]:
    """Consumers left by reader processes that are gone: idle that long, nothing pending. Their names."""
    if not redis.exists(stream):
        return []
    try:
        consumers = redis.xinfo_consumers(stream, group)
    except ResponseError:  # NOGROUP: no reader has read it yet
        return []
    idle = [c["name"] for c in consumers if c["pending"] == 0 and c["idle"] >= idle_seconds * 1000]
    for name in idle:
        redis.xgroup_delconsumer(stream, group, name)
    return idle


class GroupStream:
    """A stream whose entries are work, read by the worker processes through one consumer group."""

    group = ""

    def __init__(self, redis: Redis, key: str):
        self._redis, self.key = redis, key

    def reader(self, consumer: str) -> ConsumerGroup:
        return ConsumerGroup(self._redis, self.key, self.group, consumer)

    def backlog(self) -> int:
        """Entries accepted and not yet done."""
        return self._redis.xlen(self.key)

    def trim_before(self, before: float) -> int:
        return trim_before(self._redis, self.key, before)

    def drop_idle_consumers(self, idle_seconds: float) -> list[str]:
        return drop_idle_consumers(self._redis, self.key, self.group, idle_seconds)
