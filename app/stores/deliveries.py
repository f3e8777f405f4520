"""Delivery records: one hash per (task, destination), the index of deliveries not done yet, and the dead
letters (all of them by when they died, and each tenant's, which its pages are read from). This store owns
those keys and their Lua; what a delivery does next is decided in
app.domain.deliveries.

A record's fields (``DeliveryRecord``, what the reads return): its ids (delivery, tenant, task; a saved
destination's or hook's, if any), ``kind``, ``state`` (app.core.states.DeliveryState), ``attempts``, when it
was created and updated, the ``event`` it carries (JSON), ``export``, a sealed ``config`` (an inline
destination), and what its attempts left: ``last_error``, ``location``, ``external_id``, ``progress`` (a
resumable upload's state, JSON), ``next_attempt_at``, ``delivered_at``, ``retry_job`` and its
``lane_entry``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from app.core.states import DELIVERY_SETTLED, DeliveryState, lua_set
from app.stores.primary import queue_script
from app.stores.resealing import Swapper
from app.stores.tasks import field_pairs, to_field

# KEYS: the delivery record, and optionally the hash holding what it goes to. ARGV: the most attempts, now,
# the target's field. Returns the record as it was, the target (or nil), and 1 when this attempt started.
_BEGIN = (
    lua_set("SETTLED", DELIVERY_SETTLED)
    + """
local record = redis.call('HGETALL', KEYS[1])
local state = redis.call('HGET', KEYS[1], 'state')
if not state or SETTLED[state] then return {record, false, 0} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') + 1
if state == 'delivering' and attempts > tonumber(ARGV[1]) then return {record, false, 0} end
redis.call('HSET', KEYS[1], 'state', 'delivering', 'attempts', attempts, 'updated_at', ARGV[2])
local target = false
if KEYS[2] then target = redis.call('HGET', KEYS[2], ARGV[3]) end
return {record, target, 1}
"""
)

# KEYS: the delivery record. ARGV: its field/value pairs. Nothing is written for a delivery planned before (the
# finish hook ran again after a crash): it may have been attempted since.
_RECORD = """
if redis.call('HSETNX', KEYS[1], 'delivery_id', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


# KEYS: lane stream, delivery record, open deliveries. ARGV: delivery id, when to look at it if not done.
# Only a delivery not yet attempted, and not in the lane already, is added: follow-ups planned twice (a
# finish hook run again after a refused write, or by a racing webhook and poll) must not add a second
# entry, which another worker could run at the same time as the first. The entry carries what the delivery
# goes to (tenant, saved destination or hook), so an attempt reads that with its record in one round trip.
_TO_LANE = """
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


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A delivery as stored: every field Relay writes on its hash, typed. Text that is empty or absent in
    Redis reads as None (replay and a success write "" to clear a field)."""

    delivery_id: str
    tenant_id: str
    task_id: str
    kind: str
    state: DeliveryState
    created_at: float
    updated_at: float
    event: dict
    attempts: int = 0
    # what it goes to: a saved destination, a hook, or its own sealed config (an inline destination)
    destination_id: str | None = None
    hook_id: str | None = None
    config: str | None = None
    export: str | None = None
    # what its attempts left
    last_error: str | None = None
    location: str | None = None
    external_id: str | None = None
    progress: dict = field(default_factory=dict)
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    retry_job: str | None = None
    lane_entry: str | None = None

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> DeliveryRecord:
        """The one place a delivery's Redis strings become values. Fields this code does not know (written
        by a newer Relay during a rolling deploy) are left out rather than refused."""
        return cls(
            delivery_id=raw["delivery_id"],
            tenant_id=raw["tenant_id"],
            task_id=raw["task_id"],
            kind=raw["kind"],
            state=DeliveryState(raw["state"]),
            created_at=float(raw["created_at"]),
            updated_at=float(raw["updated_at"]),
            event=json.loads(raw["event"]),
            attempts=int(raw.get("attempts") or 0),
            progress=json.loads(raw.get("progress") or "{}"),
            **{name: raw.get(name) or None for name in _TEXT},
            **{name: float(raw[name]) for name in _TIMES if raw.get(name)},
        )


_TEXT = (
    "destination_id",
    "hook_id",
    "config",
    "export",
    "last_error",
    "location",
    "external_id",
    "retry_job",
    "lane_entry",
)
_TIMES = ("next_attempt_at", "delivered_at")


LANE = "lane"
"""The delivery lane's stream, under the key prefix (app.stores.lane_stream reads it)."""


class DeliveryStore:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix
        self._begin = redis.register_script(_BEGIN)
        self._record = redis.register_script(_RECORD)
        self._to_lane = redis.register_script(_TO_LANE)
        self.lane_key = prefix + LANE
        """The delivery lane's stream (app.stores.lane_stream): deliveries due now."""
        self.open_key = prefix + "deliveries:open"
        """Deliveries not done yet, scored by when the reconciler should look at them if still not done."""
        self.dead_key = prefix + "deadletter"
        """Dead deliveries, scored by when they died (retention, the dashboard's list of every tenant)."""
        self._dead_indexed_key = prefix + "deadletter-by-tenant-built"

    def tenant_dead_key(self, tenant_id: str) -> str:
        """One tenant's dead deliveries, scored by when they died: its pages of the dead-letter list."""
        return f"{self.dead_key}:{tenant_id}"

    def key_for(self, delivery_id: str) -> str:
        return f"{self._prefix}delivery:{delivery_id}"

    # -- reads -----------------------------------------------------------------------------------

    def get(self, delivery_id: str, tenant_id: str | None = None) -> DeliveryRecord | None:
        raw = self._redis.hgetall(self.key_for(delivery_id))
        if not raw or (tenant_id is not None and raw["tenant_id"] != tenant_id):
            return None
        return DeliveryRecord.from_hash(raw)

    def states(self, delivery_ids: list[str]) -> dict[str, DeliveryState]:
        """The state of each delivery that still has a record, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for delivery_id in delivery_ids:
            pipe.hget(self.key_for(delivery_id), "state")
        found = zip(delivery_ids, pipe.execute(), strict=True)
        return {delivery_id: DeliveryState(state) for delivery_id, state in found if state}

    def attempts(self, delivery_id: str) -> int:
        return int(self._redis.hget(self.key_for(delivery_id), "attempts") or 0)

    def dead_page(
        self, tenant_id: str | None, before: float | None, limit: int
    ) -> tuple[list[DeliveryRecord], float | None]:
        """A page of dead deliveries, the latest to die first, that died before ``before`` (excluded: the
        cursor of the page before): one tenant's, or every tenant's (None); and the next page's cursor.
        Two round trips, whatever the page's size."""
        index = self.tenant_dead_key(tenant_id) if tenant_id else self.dead_key
        top = f"({before!r}" if before is not None else "+inf"
        listed = self._redis.zrevrangebyscore(
            index, top, "-inf", start=0, num=limit + 1, withscores=True
        )
        pipe = self._redis.pipeline(transaction=False)
        for delivery_id, _ in listed[:limit]:
            pipe.hgetall(self.key_for(delivery_id))
        read = [DeliveryRecord.from_hash(raw) for raw in pipe.execute() if raw]
        # replayed while its tenant's list was being built (index_dead_letters_by_tenant): not shown
        found = [record for record in read if record.state == DeliveryState.DEAD]
        return found, (listed[limit - 1][1] if len(listed) > limit else None)

    def dead_count(self, tenant_id: str | None = None) -> int:
        return self._redis.zcard(self.tenant_dead_key(tenant_id) if tenant_id else self.dead_key)

    def target(self, where: tuple[str, str]) -> str | None:
        """What a delivery goes to, saved apart from it (a destination's or hook's hash and field)."""
        return self._redis.hget(*where)

    def overdue(self, now: float, limit: int) -> list[str]:
        """Deliveries not done whose time to be looked at has come (the reconciler's)."""
        return self._redis.zrangebyscore(self.open_key, "-inf", now, start=0, num=limit)

    # -- writes ----------------------------------------------------------------------------------

    def record(self, pipe, delivery_id: str, fields: dict[str, Any]) -> None:
        """Queue on ``pipe`` a new record, unless the delivery was planned before."""
        queue_script(
            pipe, self._record, [self.key_for(delivery_id)], [delivery_id, *field_pairs(fields)]
        )

    def update(self, delivery_id: str, pipe=None, **fields: Any) -> None:
        """Set fields of the record, at once or queued on ``pipe``."""
        fields.setdefault("updated_at", time.time())
        (pipe or self._redis).hset(
            self.key_for(delivery_id), mapping={k: to_field(v) for k, v in fields.items()}
        )

    def begin(
        self, delivery_id: str, max_attempts: int, target: tuple[str, str] | None = None
    ) -> tuple[DeliveryRecord | None, str | None, bool]:
        """Start an attempt in one round trip: the record as it was (None: gone), the stored target when its
        (key, field) is given, and whether the attempt started. It does not for a delivery delivered or
        dead, nor for one whose every attempt so far ended with its worker (left "delivering" past the
        last one)."""
        keys, args = [self.key_for(delivery_id)], [max_attempts, time.time()]
        if target:
            keys.append(target[0])
            args.append(target[1])
        pairs, stored, started = self._begin(keys=keys, args=args)
        record = dict(zip(pairs[::2], pairs[1::2], strict=True))
        return DeliveryRecord.from_hash(record) if record else None, stored, bool(started)

    def to_lane(self, delivery_id: str, recheck_at: float, pipe=None) -> None:
        """Queue a delivery's attempt now, remembering its entry on the record: one atomic Redis call (at
        once, or queued on ``pipe``), which does nothing for a delivery already in the lane or already
        attempted. ``recheck_at``: when the reconciler looks at it if it is not done by then."""
        keys, args = (
            [self.lane_key, self.key_for(delivery_id), self.open_key],
            [delivery_id, recheck_at],
        )
        if pipe is None:
            self._to_lane(keys=keys, args=args)
        else:
            queue_script(pipe, self._to_lane, keys, args)

    def name_retry(self, delivery_id: str, job_id: str) -> None:
        """The RQ job that will make the next attempt, named before it exists (the reconciler looks for it)."""
        self._redis.hset(self.key_for(delivery_id), "retry_job", job_id)

    def look_again_at(self, delivery_id: str, when: float) -> None:
        self._redis.zadd(self.open_key, {delivery_id: when})

    def settled(
        self, pipe, delivery_id: str, dead_at: float | None = None, tenant_id: str = ""
    ) -> None:
        """Queue on ``pipe``: no longer open, and in the dead letters (every tenant's and its own) when it
        died (at ``dead_at``)."""
        pipe.zrem(self.open_key, delivery_id)
        if dead_at is not None:
            pipe.zadd(self.dead_key, {delivery_id: dead_at})
            pipe.zadd(self.tenant_dead_key(tenant_id), {delivery_id: dead_at})

    def unsettle(self, delivery_id: str) -> None:
        """Not open any more (gone, or settled already): the reconciler stops looking at it."""
        self._redis.zrem(self.open_key, delivery_id)

    def raise_from_dead(self, delivery_id: str, tenant_id: str) -> float | None:
        """Out of the dead letters (a replay); returns when it had died, if it was there."""
        pipe = self._redis.pipeline()
        pipe.zscore(self.dead_key, delivery_id)
        pipe.zrem(self.dead_key, delivery_id)
        pipe.zrem(self.tenant_dead_key(tenant_id), delivery_id)
        died_at, removed, _ = pipe.execute()
        return died_at if removed else None

    def dead_before(self, when: float, limit: int) -> list[str]:
        """Dead letters that died before ``when``, the earliest first."""
        return self._redis.zrangebyscore(self.dead_key, "-inf", when, start=0, num=limit)

    def drop_dead_letters(self, delivery_ids: list[str]) -> None:
        """Out of the dead letters for good (their records stay with their tasks)."""
        if not delivery_ids:
            return
        pipe = self._redis.pipeline()
        pipe.zrem(self.dead_key, *delivery_ids)
        for delivery_id, tenant_id in zip(
            delivery_ids, self._tenants_of(delivery_ids), strict=True
        ):
            if tenant_id:  # a record gone took its place in its tenant's list with it (forget)
                pipe.zrem(self.tenant_dead_key(tenant_id), delivery_id)
        pipe.execute()

    def reseal_all(self, reseal: Callable[[str], str]) -> int:
        """Every record's own sealed config (an inline destination's) re-encrypted; returns how many."""
        swapper, count = Swapper(self._redis), 0
        for key in self._redis.scan_iter(match=self.key_for("*"), count=1000, _type="HASH"):
            count += swapper.swap(key, "config", reseal)
        return count

    def forget(self, pipe, tenant_id: str, delivery_ids: list[str]) -> None:
        """Queue on ``pipe`` the removal of the tenant's deliveries' records and their places in the
        indexes."""
        if delivery_ids:
            pipe.delete(*(self.key_for(d) for d in delivery_ids))
            pipe.zrem(self.dead_key, *delivery_ids)
            pipe.zrem(self.tenant_dead_key(tenant_id), *delivery_ids)
            pipe.zrem(self.open_key, *delivery_ids)

    def index_dead_letters_by_tenant(self) -> int:
        """Once per installation: the tenants' lists of dead letters that died before they existed (a relay
        upgraded from one that kept only the list of all). Returns how many were indexed."""
        if self._redis.exists(self._dead_indexed_key):
            return 0
        dead = self._redis.zrange(self.dead_key, 0, -1, withscores=True)
        pipe = self._redis.pipeline()
        ids = [delivery_id for delivery_id, _ in dead]
        for (delivery_id, died_at), tenant_id in zip(dead, self._tenants_of(ids), strict=True):
            if tenant_id:
                pipe.zadd(self.tenant_dead_key(tenant_id), {delivery_id: died_at})
        pipe.set(self._dead_indexed_key, "1")
        pipe.execute()
        return len(dead)

    def _tenants_of(self, delivery_ids: list[str]) -> list[str | None]:
        pipe = self._redis.pipeline(transaction=False)
        for delivery_id in delivery_ids:
            pipe.hget(self.key_for(delivery_id), "tenant_id")
        return pipe.execute()
