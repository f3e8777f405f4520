"""The delivery lane's stream: deliveries due now, each until a worker's lane (app.work.lane) has recorded
its attempt's outcome. See docs/decisions/0008-delivery-lane.md."""

from __future__ import annotations

from app.stores import deliveries
from app.stores.context import Context

GROUP = "relay-lane"
"""Entries are added with their delivery's record, by app.stores.deliveries (DeliveryStore.to_lane)."""


def stream_key(ctx: Context) -> str:
    return ctx.key(deliveries.LANE)


def waiting(ctx: Context, entry_id: str) -> bool:
    """Whether the entry is still in the lane (queued, or taken by a worker and not finished)."""
    return bool(entry_id) and bool(ctx.redis.xrange(stream_key(ctx), entry_id, entry_id, count=1))


def backlog(ctx: Context) -> int:
    return ctx.redis.xlen(stream_key(ctx))
