"""The delivery lane's stream: deliveries due now, each until a worker's lane (app.work.lane) has recorded
its attempt's outcome. See docs/decisions/0008-delivery-lane.md."""

from __future__ import annotations

from app.stores.context import Context

GROUP = "relay-lane"

# KEYS: lane stream, delivery record, open deliveries. ARGV: delivery id, when to look at it if not done.
# Only a delivery not yet attempted, and not in the lane already, is added: follow-ups planned twice (a
# finish hook run again after a refused write, or by a racing webhook and poll) must not add a second
# entry, which another worker could run at the same time as the first. The entry carries what the delivery
# goes to (tenant, saved destination or hook), so an attempt reads that with its record in one round trip.
_ADD = """
local record = redis.call('HMGET', KEYS[2], 'state', 'lane_entry', 'tenant_id', 'destination_id', 'hook_id')
if record[1] and record[1] ~= 'pending' then return false end
local queued = record[2]
if queued and queued ~= '' and #redis.call('XRANGE', KEYS[1], queued, queued, 'COUNT', 1) > 0 then
  return queued
end
local fields = {'delivery', ARGV[1]}
for i, name in ipairs({'tenant_id', 'destination_id', 'hook_id'}) do
  local value = record[i + 2]
  if value and value ~= '' then table.insert(fields, name); table.insert(fields, value) end
end
local entry = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('HSET', KEYS[2], 'lane_entry', entry)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return entry
"""


def stream_key(ctx: Context) -> str:
    return ctx.key("lane")


def add(
    ctx: Context, delivery_id: str, record_key: str, open_key: str, recheck_at: float, pipe=None
) -> None:
    """Queue a delivery's attempt now, remembering its entry on the record: one atomic Redis call (at once, or
    queued on ``pipe``), which does nothing for a delivery already in the lane or already attempted."""
    ctx.script("lane-add", _ADD)(
        keys=[stream_key(ctx), record_key, open_key], args=[delivery_id, recheck_at], client=pipe
    )


def waiting(ctx: Context, entry_id: str) -> bool:
    """Whether the entry is still in the lane (queued, or taken by a worker and not finished)."""
    return bool(entry_id) and bool(ctx.redis.xrange(stream_key(ctx), entry_id, entry_id, count=1))


def backlog(ctx: Context) -> int:
    return ctx.redis.xlen(stream_key(ctx))
