"""Redis stream consumer-group helpers shared by the intake pump and the delivery lane."""

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
    pipe.xack(stream, group, entry_id)
    pipe.xdel(stream, entry_id)
    pipe.execute()
