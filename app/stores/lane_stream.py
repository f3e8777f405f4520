"""The delivery lane's stream: deliveries due now, each until a worker's lane (app.work.lane) has
recorded its attempt's outcome. See docs/decisions/0008-delivery-lane.md."""

from __future__ import annotations

from redis import Redis

from app.stores import deliveries
from app.stores.consumer_group import GroupStream

GROUP = "relay-lane"
"""Entries are added with their delivery's record, by app.stores.deliveries (DeliveryStore.to_lane)."""


class LaneStream(GroupStream):
    group = GROUP

    def __init__(self, redis: Redis, prefix: str):
        super().__init__(redis, prefix + deliveries.LANE)

    def waiting(self, entry_id: str) -> bool:
        """Whether the entry is still in the lane (queued, or taken by a worker and not finished)."""
        return bool(entry_id) and bool(self._redis.xrange(self.key, entry_id, entry_id, count=1))
