"""The relay's own event log per tenant (task.completed, task.failed, ...), newest first with stable ids:
what polling triggers (Zapier, Make) read. A Redis stream, capped."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from redis import Redis

from app.stores.consumer_group import trim_before

EVENT_TYPES = ("task.completed", "task.failed", "task.cancelled", "task.expired")
KEEP = 10_000  # events kept per tenant (approximately: the stream is trimmed lazily)


def iso(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class EventLog:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix

    def key_for(self, tenant_id: str) -> str:
        return f"{self._prefix}events:{tenant_id}"

    def trim_before(self, tenant_id: str, before: float) -> int:
        """Remove the tenant's events older than ``before``."""
        return trim_before(self._redis, self.key_for(tenant_id), before)

    def newest(self, tenant_id: str, event_type: str | None = None, limit: int = 50) -> list[dict]:
        found: list[dict] = []
        last = "+"
        while len(found) < limit:
            batch = self._redis.xrevrange(self.key_for(tenant_id), max=last, min="-", count=200)
            if last != "+":
                batch = batch[1:]  # the range is inclusive of where we stopped
            if not batch:
                break
            for entry_id, fields in batch:
                event = json.loads(fields["e"])
                if event_type is None or event["type"] == event_type:
                    found.append(event)
                last = entry_id
        return found[:limit]
