"""Batches in Redis: the batch (a hash with its counts), its rows (a hash of JSON by row number), the rows
waiting to be handed over (a list), the rows being handed over by when each was claimed (a sorted set:
the reconciler reads only the stale ones), and each tenant's feed (how many of its batch rows the API has, and
how many it may have: app.domain.batches adapts that; and what it decided so far: the most rows it had in the
API at once, ``max_inflight``, and how often it cut its limit, ``pool_waits`` for a full pool and
``slowdowns`` for a 429 or an unavailable API).

A row is claimed with its task id in one Lua call: the task is then made under that id, so a worker that
dies after the claim leaves a row a later feed finishes, never a second task."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from redis import Redis

from app.core.ids import new_id
from app.core.states import ROW_ENDED, BatchStatus, RowState, lua_set
from app.stores.resealing import Swapper
from app.stores.tasks import reseal_refs, to_field

# KEYS: the tenant's feed, the batch's waiting rows, its rows, the batch, its claims. ARGV: now, the task id
# for the row, the feed's first limit. Returns the row claimed (JSON, with the task id), or false: none
# waiting, or the tenant's rows in the API are at its limit, or the feed is holding back after a 429.
_CLAIM = """
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or ARGV[3])
local inflight = tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0')
local hold = tonumber(redis.call('HGET', KEYS[1], 'hold_until') or '0')
if tonumber(ARGV[1]) < hold or inflight >= math.floor(limit) then return false end
if redis.call('HGET', KEYS[4], 'status') ~= 'running' then return false end
local n = redis.call('LPOP', KEYS[2])
if not n then return false end
local row = cjson.decode(redis.call('HGET', KEYS[3], n))
row.state, row.task_id, row.claimed_at = 'submitting', ARGV[2], tonumber(ARGV[1])
local encoded = cjson.encode(row)
redis.call('HSET', KEYS[3], n, encoded)
redis.call('HINCRBY', KEYS[4], 'pending', -1)
redis.call('HINCRBY', KEYS[4], 'submitting', 1)
inflight = redis.call('HINCRBY', KEYS[1], 'inflight', 1)
if inflight > tonumber(redis.call('HGET', KEYS[1], 'max_inflight') or '0') then
  redis.call('HSET', KEYS[1], 'max_inflight', inflight)
end
redis.call('ZADD', KEYS[5], ARGV[1], n)
return encoded
"""

# KEYS: the rows, the batch, the tenant's feed, the batch's claims. ARGV: row number, new state, JSON of
# fields to set, 1 to give the feed back the place of a row that was in the API, credits its task used
# (added to the batch's). Returns the row as it was (JSON), or false when it had already ended (only a
# retry moves an ended row, back to pending).
_MOVE = (
    lua_set("ENDED", ROW_ENDED)
    + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local row = cjson.decode(raw)
if ENDED[row.state] and ARGV[2] ~= 'pending' then return false end
local was = row.state
for k, v in pairs(cjson.decode(ARGV[3])) do row[k] = v end
redis.call('HINCRBY', KEYS[2], was, -1)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
row.state = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(row))
if was == 'submitting' then redis.call('ZREM', KEYS[4], ARGV[1]) end
if ARGV[4] == '1' and (was == 'submitting' or was == 'running') then
  redis.call('HINCRBY', KEYS[3], 'inflight', -1)
end
if tonumber(ARGV[5]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[2], 'credits_used', ARGV[5]) end
return raw
"""
)

# KEYS: the tenant's feed. ARGV: the lowest limit, the seconds between two cuts, now. One row off the
# limit unless the last cut was too recent; returns 1 when it cut.
_POOL_WAIT = """
local now = tonumber(ARGV[3])
if now - tonumber(redis.call('HGET', KEYS[1], 'pool_cut_at') or '0') < tonumber(ARGV[2]) then return 0 end
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '2')
redis.call('HSET', KEYS[1], 'limit', math.max(tonumber(ARGV[1]), limit - 1), 'pool_cut_at', now)
redis.call('HINCRBY', KEYS[1], 'pool_waits', 1)
return 1
"""


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch as stored: every field Relay writes on its hash, typed."""

    batch_id: str
    tenant_id: str
    status: BatchStatus
    created_at: float
    updated_at: float
    total: int
    settings: dict
    """What the batch asked for, as app.domain.batches.create keeps it (format, on_error, skip_done...)."""
    counts: dict[RowState, int]
    """Its rows in each state, every state present: ``_CLAIM`` and ``_MOVE`` count each move."""
    credits_used: float = 0.0
    ended_at: float | None = None
    announced: float | None = None
    """When its end was announced: set once, by whoever saw it end first."""
    delivery_ids: list[str] = field(default_factory=list)
    """The deliveries of its end (batch.completed), each announcement's."""
    retries: int = 0
    """How many times its failed rows were run again: each end after one is announced again."""

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Batch:
        """The one place a batch's Redis strings become values. Fields this code does not know (written by
        a newer Relay during a rolling deploy) are left out rather than refused."""
        return cls(
            batch_id=raw["batch_id"],
            tenant_id=raw["tenant_id"],
            status=BatchStatus(raw["status"]),
            created_at=float(raw.get("created_at") or 0),
            updated_at=float(raw.get("updated_at") or 0),
            total=int(raw.get("total") or 0),
            settings=json.loads(raw["settings"]),
            counts={state: int(raw.get(state) or 0) for state in RowState},
            credits_used=float(raw.get("credits_used") or 0),
            # a retry writes an empty ended_at: running again
            ended_at=float(raw["ended_at"]) if raw.get("ended_at") else None,
            announced=float(raw["announced"]) if raw.get("announced") else None,
            delivery_ids=json.loads(raw.get("delivery_ids") or "[]"),
            retries=int(raw.get("retries") or 0),
        )


@dataclass(frozen=True, slots=True)
class BatchRow:
    """A batch row as stored (JSON in the batch's rows hash): what app.domain.batches.prepare made, then
    its claim's task id and time, then the credits and error its task ended with. An empty error (a retry
    writes one) reads as None."""

    row: int
    record_key: str
    prompt: str
    state: RowState
    task_id: str | None = None
    claimed_at: float | None = None
    credits: float | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, raw: str) -> BatchRow:
        """The one place a stored row becomes values; keys this code does not know (written by a newer
        Relay during a rolling deploy) are left out rather than refused."""
        row = json.loads(raw)
        return cls(
            row=int(row["row"]),
            record_key=row["record_key"],
            prompt=row["prompt"],
            state=RowState(row["state"]),
            task_id=row.get("task_id") or None,
            claimed_at=float(row["claimed_at"]) if row.get("claimed_at") is not None else None,
            # as the JSON holds it: Lua's cjson writes 3.0 as 3, and the API and the manifest show 3
            credits=row.get("credits"),
            error=row.get("error") or None,
        )

    def to_json(self) -> str:
        """The row as stored (what ``from_json`` reads back); None is left out."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps({name: value for name, value in values.items() if value is not None})


class BatchStore:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix
        self._claim = redis.register_script(_CLAIM)
        self._move = redis.register_script(_MOVE)
        self._pool_wait = redis.register_script(_POOL_WAIT)
        self.running_key = prefix + "batches:running"
        self.recent_key = prefix + "batches:recent"  # batch id -> created at (the dashboard's list)
        self.ended_key = prefix + "batches:ended"  # batch id -> ended at (the retention sweep)

    def key_for(self, batch_id: str) -> str:
        return f"{self._prefix}batch:{batch_id}"

    def rows_key(self, batch_id: str) -> str:
        return f"{self._prefix}batch:{batch_id}:rows"

    def waiting_key(self, batch_id: str) -> str:
        return f"{self._prefix}batch:{batch_id}:waiting"

    def claims_key(self, batch_id: str) -> str:
        """The rows being handed over (state ``submitting``) by when each was claimed."""
        return f"{self._prefix}batch:{batch_id}:claims"

    def feed_key(self, tenant_id: str) -> str:
        return f"{self._prefix}batchfeed:{tenant_id}"

    def create(self, tenant_id: str, settings: dict, rows: list[BatchRow]) -> Batch:
        batch_id, now = new_id("bat"), time.time()
        batch = {
            "batch_id": batch_id,
            "tenant_id": tenant_id,
            "status": BatchStatus.RUNNING,
            "created_at": now,
            "updated_at": now,
            "total": len(rows),
            "settings": json.dumps(settings),
            "credits_used": 0,
            **{state: 0 for state in RowState},
            "pending": len(rows),
        }
        stored = {name: str(value) for name, value in batch.items()}  # as redis-py writes them
        pipe = self._redis.pipeline()
        pipe.hset(self.key_for(batch_id), mapping=stored)
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            pipe.hset(
                self.rows_key(batch_id), mapping={str(row.row): row.to_json() for row in chunk}
            )
            pipe.rpush(self.waiting_key(batch_id), *(row.row for row in chunk))
        pipe.sadd(self.running_key, batch_id)
        pipe.sadd(self.tenant_running_key(tenant_id), batch_id)
        pipe.zadd(self.recent_key, {batch_id: now})
        pipe.execute()
        return self.get(batch_id) or Batch.from_hash(stored)

    def get(self, batch_id: str, tenant_id: str | None = None) -> Batch | None:
        raw = self._redis.hgetall(self.key_for(batch_id))
        if not raw or (tenant_id is not None and raw["tenant_id"] != tenant_id):
            return None
        return Batch.from_hash(raw)

    def set(self, batch_id: str, **fields: Any) -> None:
        """Fields of the batch (None is stored empty, a list as JSON), and the time they were written."""
        self._redis.hset(
            self.key_for(batch_id),
            mapping={"updated_at": time.time(), **{k: to_field(v) for k, v in fields.items()}},
        )

    def announce_once(self, batch_id: str) -> bool:
        """Mark the batch's end as announced; True for the one caller that marked it first."""
        return bool(self._redis.hsetnx(self.key_for(batch_id), "announced", time.time()))

    def announce_again(self, batch_id: str) -> None:
        """Its rows run again (a retry): its next end is announced too."""
        pipe = self._redis.pipeline()
        pipe.hdel(self.key_for(batch_id), "announced")
        pipe.hincrby(self.key_for(batch_id), "retries", 1)
        pipe.execute()

    def rows_from(self, batch_id: str, first: int, count: int) -> list[BatchRow]:
        """Rows ``first`` .. ``first + count - 1`` that exist, by number: one HMGET, whatever the batch's size."""
        return self.rows_by_number(batch_id, list(range(first, first + count)))

    def rows(self, batch_id: str) -> list[BatchRow]:
        rows = [BatchRow.from_json(raw) for raw in self._redis.hvals(self.rows_key(batch_id))]
        return sorted(rows, key=lambda row: row.row)

    def claim(
        self, batch_id: str, tenant_id: str, first_limit: int, now: float | None = None
    ) -> BatchRow | None:
        """The next waiting row, claimed ``now`` (a test's clock, else the time) with a new task id; None when
        none waits, the tenant's feed is at its limit, or it holds back."""
        keys = [
            self.feed_key(tenant_id),
            self.waiting_key(batch_id),
            self.rows_key(batch_id),
            self.key_for(batch_id),
            self.claims_key(batch_id),
        ]
        claimed = self._claim(
            keys=keys, args=[time.time() if now is None else now, new_id("tsk"), first_limit]
        )
        return BatchRow.from_json(claimed) if claimed else None

    def move(
        self,
        batch: Batch,
        row: int,
        state: RowState,
        frees_place: bool = False,
        credits: float | None = None,
        error: str | None = None,
    ) -> BatchRow | None:
        """Set a row's state (and its ``credits`` and ``error``, when given: an empty error clears it),
        counted on the batch, with the row's credits added to the batch's in the same step; the row as it
        was, or None when it had already ended."""
        keys = [
            self.rows_key(batch.batch_id),
            self.key_for(batch.batch_id),
            self.feed_key(batch.tenant_id),
            self.claims_key(batch.batch_id),
        ]
        given = {"credits": credits, "error": error}
        fields = {name: value for name, value in given.items() if value is not None}
        before = self._move(
            keys=keys,
            args=[row, state, json.dumps(fields), int(frees_place), float(credits or 0)],
        )
        return BatchRow.from_json(before) if before else None

    def claimed_before(self, batch: Batch, when: float) -> list[BatchRow]:
        """Rows still being handed over that were claimed before ``when``."""
        claims = self.claims_key(batch.batch_id)
        numbers = self._redis.zrangebyscore(claims, "-inf", f"({when!r}")
        return [
            row
            for row in self.rows_by_number(batch.batch_id, numbers)
            if row.state == RowState.SUBMITTING
        ]

    def rows_by_number(self, batch_id: str, numbers: list) -> list[BatchRow]:
        raws = (
            self._redis.hmget(self.rows_key(batch_id), [str(n) for n in numbers]) if numbers else []
        )
        return [BatchRow.from_json(raw) for raw in raws if raw]

    def requeue(self, batch_id: str, rows: list[int]) -> None:
        if rows:
            self._redis.rpush(self.waiting_key(batch_id), *rows)

    def waiting(self, batch_id: str) -> list[int]:
        return [int(n) for n in self._redis.lrange(self.waiting_key(batch_id), 0, -1)]

    def clear_waiting(self, batch_id: str) -> None:
        self._redis.delete(self.waiting_key(batch_id))

    def tenant_running_key(self, tenant_id: str) -> str:
        return f"{self._prefix}batches:running:{tenant_id}"

    def running(self, tenant_id: str | None = None) -> list[str]:
        """Running batches, oldest first (ids are ULIDs): all, or a tenant's."""
        return sorted(
            self._redis.smembers(
                self.tenant_running_key(tenant_id) if tenant_id else self.running_key
            )
        )

    def recent(self, limit: int = 50) -> list[Batch]:
        """The newest batches of every tenant (the operator's dashboard)."""
        found = (
            self.get(batch_id) for batch_id in self._redis.zrevrange(self.recent_key, 0, limit - 1)
        )
        return [batch for batch in found if batch]

    def resumed(self, tenant_id: str, batch_id: str) -> None:
        pipe = self._redis.pipeline()
        pipe.sadd(self.running_key, batch_id)
        pipe.sadd(self.tenant_running_key(tenant_id), batch_id)
        pipe.zrem(self.ended_key, batch_id)
        pipe.execute()

    def ended(self, batch_id: str, tenant_id: str = "") -> None:
        pipe = self._redis.pipeline()
        pipe.srem(self.running_key, batch_id)
        if tenant_id:
            pipe.srem(self.tenant_running_key(tenant_id), batch_id)
        pipe.zadd(self.ended_key, {batch_id: time.time()}, nx=True)
        pipe.execute()

    def ended_before(self, when: float, limit: int) -> list[str]:
        return list(self._redis.zrangebyscore(self.ended_key, "-inf", when, start=0, num=limit))

    def reseal_all(self, reseal: Callable[[str], str]) -> int:
        """Every batch's inline destinations (in its settings) re-encrypted; returns how many had any."""
        swapper, count = Swapper(self._redis), 0

        def settings(raw: str) -> str:
            stored = json.loads(raw)
            if not stored.get("destinations"):
                return raw
            refs = json.loads(reseal_refs(json.dumps(stored["destinations"]), reseal))
            return json.dumps({**stored, "destinations": refs})

        for batch_id in self._redis.zrange(self.recent_key, 0, -1):
            count += swapper.swap(self.key_for(batch_id), "settings", settings)
        return count

    def forget(self, pipe, batch_id: str) -> None:
        """Queue on ``pipe`` the removal of the batch, its rows and its places in the indexes."""
        pipe.delete(
            self.key_for(batch_id),
            self.rows_key(batch_id),
            self.waiting_key(batch_id),
            self.claims_key(batch_id),
        )
        pipe.zrem(self.recent_key, batch_id)
        pipe.zrem(self.ended_key, batch_id)

    def feed(self, tenant_id: str) -> dict[str, float]:
        raw = self._redis.hgetall(self.feed_key(tenant_id))
        return {name: float(value) for name, value in raw.items()}

    def pool_waited(
        self, tenant_id: str, minimum: float, every_seconds: float, now: float | None = None
    ) -> bool:
        """One row fewer in the tenant's feed (not below ``minimum``, not again within ``every_seconds``):
        the API's pool was full. Counted in the feed's ``pool_waits``. False when it was too soon. ``now``: a
        test's clock."""
        return bool(
            self._pool_wait(
                keys=[self.feed_key(tenant_id)],
                args=[minimum, every_seconds, time.time() if now is None else now],
            )
        )

    def adjust_feed(self, tenant_id: str, limit: float) -> None:
        self._redis.hset(self.feed_key(tenant_id), "limit", limit)

    def slow_feed(self, tenant_id: str, limit: float, hold_until: float) -> None:
        """The API refused a hand-over for now: a lower limit, no claims before ``hold_until``, and one more
        of the feed's ``slowdowns``."""
        pipe = self._redis.pipeline()
        pipe.hset(self.feed_key(tenant_id), mapping={"limit": limit, "hold_until": hold_until})
        pipe.hincrby(self.feed_key(tenant_id), "slowdowns", 1)
        pipe.execute()
