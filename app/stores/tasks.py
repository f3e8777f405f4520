"""Relay tasks: one submitted prompt, from `pending_submit` to a terminal state, with its API ids.

Terminal transitions go through one Lua script, so a webhook, a redelivery and the reconciler can
race and exactly one of them finishes the task (and fans it out).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from redis import Redis

from app.core.ids import new_id
from app.core.states import TASK_ENDED, TaskStatus, lua_set
from app.stores.events import KEEP, EventLog
from app.stores.records import RecordStore
from app.stores.resealing import Swapper
from app.stores.tenants import TenantStore
from app.stores.usage import SECONDS_BOUNDS, UsageRows, day_of, number, record_prefix

# ARGV[1]: status the task must be in ('' = any non-terminal); ARGV[2..]: field/value pairs.
# Returns 1 when applied. A terminal status also drops the task from the reconciler's watch list.
# The guard every task script starts with: -1 for an unknown task, 0 for one that already ended.
_UNLESS_ENDED = (
    lua_set("ENDED", TASK_ENDED)
    + """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
if ENDED[current] then return 0 end
"""
)

_TRANSITION = (
    _UNLESS_ENDED
    + """
if ARGV[1] ~= '' and current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ENDED[redis.call('HGET', KEYS[1], 'status')] then
  redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'task_id'))
end
return 1
"""
)

# KEYS: the task, the watch list, the tenant, the record ('' without one), the tenant's event log, the day's
# usage row, the index of ended tasks (for retention). ARGV: credits, agent ms, the event (JSON), the usage
# row's life, the record's usage field prefix, the record key, when it ended, when the reconciler looks whether
# its follow-ups ran, then the task's field/value pairs.
# The day's usage row, counted by the same script: KEYS[1] the task (its format and outcome already
# set), KEYS[6] the day's row; ARGV[1] credits, ARGV[2] agent ms, ARGV[4] the row's life, ARGV[5] the record's
# field prefix ('' without a record), ARGV[6] the record key. Besides the totals and each record's, the row
# counts each format's (``f:<format>:``), each outcome (``o:<status>``), the generation-time histogram
# (``h:<bucket>``, completed tasks) and, from the delivery worker, each destination kind's outcomes
# (``d:<kind>:delivered|dead``).
_FINISH = (
    _UNLESS_ENDED
    + """
redis.call('HSET', KEYS[1], unpack(ARGV, 9))
redis.call('HSET', KEYS[1], 'fanout', 'pending')
local id = redis.call('HGET', KEYS[1], 'task_id')
redis.call('ZADD', KEYS[2], ARGV[8], id)
redis.call('ZADD', KEYS[7], ARGV[7], id)
local credits, ms = ARGV[1], tonumber(ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[3], 'credits_used', credits)
redis.call('HINCRBY', KEYS[3], 'duration_ms', ms)
redis.call('HINCRBY', KEYS[3], 'task_count', 1)
if redis.call('HGET', KEYS[1], 'status') == 'completed' and ms > 0 then  -- how long this kind usually takes
  local usual = 'usual_ms:' .. (redis.call('HGET', KEYS[1], 'format') or '')
  local before = tonumber(redis.call('HGET', KEYS[3], usual) or ms)
  redis.call('HSET', KEYS[3], usual, math.floor(before + (ms - before) * 0.2))
end
if KEYS[4] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HINCRBYFLOAT', KEYS[4], 'credits_used', credits)
  redis.call('HINCRBY', KEYS[4], 'duration_ms', ms)
  redis.call('HINCRBY', KEYS[4], 'task_count', 1)
  if redis.call('HGET', KEYS[1], 'status') == 'completed' then
    redis.call('HSET', KEYS[4], 'latest_task_id', id)
  end
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', '@KEEP@', '*', 'e', ARGV[3])

local row, ttl, prefix = KEYS[6], ARGV[4], ARGV[5]
redis.call('HINCRBYFLOAT', row, 'credits_used', ARGV[1])
redis.call('HINCRBY', row, 'task_count', 1)
redis.call('HINCRBY', row, 'duration_ms', ARGV[2])
if prefix ~= '' then
  redis.call('HSET', row, prefix .. 'key', ARGV[6])
  redis.call('HINCRBYFLOAT', row, prefix .. 'credits_used', ARGV[1])
  redis.call('HINCRBY', row, prefix .. 'task_count', 1)
  redis.call('HINCRBY', row, prefix .. 'duration_ms', ARGV[2])
end
local task_format = redis.call('HGET', KEYS[1], 'format') or ''
local outcome = redis.call('HGET', KEYS[1], 'status') or ''
redis.call('HINCRBYFLOAT', row, 'f:' .. task_format .. ':credits_used', ARGV[1])
redis.call('HINCRBY', row, 'f:' .. task_format .. ':task_count', 1)
redis.call('HINCRBY', row, 'f:' .. task_format .. ':duration_ms', ARGV[2])
redis.call('HINCRBY', row, 'o:' .. outcome, 1)
if outcome == 'completed' and tonumber(ARGV[2]) > 0 then
  local seconds, bucket = tonumber(ARGV[2]) / 1000, 0
  for n, bound in ipairs({@BOUNDS@}) do
    if seconds <= bound then bucket = n break end
  end
  if bucket == 0 then bucket = @LAST@ end
  redis.call('HINCRBY', row, 'h:' .. bucket, 1)
end
redis.call('EXPIRE', row, ttl)
return 1
""".replace("@KEEP@", str(KEEP))
    .replace("@BOUNDS@", ", ".join(map(str, SECONDS_BOUNDS)))
    .replace("@LAST@", str(len(SECONDS_BOUNDS) + 1))
)

# The hand-over recorded. KEYS: the task, the recent index, the tenant's index, the watch list. ARGV: when it
# was created, the status the API answered, when it was handed over, when the reconciler looks at it unless
# it has ended, how many of the pairs that follow are the task's as read (stored again if a failover lost
# it: nothing is written over a task Redis still has), then those pairs and the hand-over's. Moves the task
# from pending_submit only. Returns whether it was stored again, whether it moved, and its status.
_HANDED_OVER = (
    lua_set("ENDED", TASK_ENDED)
    + """
local task, count, restored, moved = KEYS[1], tonumber(ARGV[5]), 0, 0
if redis.call('EXISTS', task) == 0 then
  redis.call('HSET', task, unpack(ARGV, 6, 5 + count))
  redis.call('ZADD', KEYS[2], ARGV[1], redis.call('HGET', task, 'task_id'))
  redis.call('ZADD', KEYS[3], ARGV[1], redis.call('HGET', task, 'task_id'))
  restored = 1
end
redis.call('HSET', task, unpack(ARGV, 6 + count))
if redis.call('HGET', task, 'status') == '@PENDING@' then
  redis.call('HSET', task, 'status', ARGV[2], 'updated_at', ARGV[3])
  moved = 1
end
local status = redis.call('HGET', task, 'status')
if ENDED[status] then
  if moved == 1 then redis.call('ZREM', KEYS[4], redis.call('HGET', task, 'task_id')) end
else
  redis.call('ZADD', KEYS[4], ARGV[4], redis.call('HGET', task, 'task_id'))
end
return {restored, moved, status}
""".replace("@PENDING@", TaskStatus.PENDING_SUBMIT)
)


@dataclass(frozen=True, slots=True)
class Task:
    """A task as stored: every field Relay writes on its hash, typed. Text that is empty or absent in
    Redis reads as None."""

    task_id: str
    tenant_id: str
    status: TaskStatus
    created_at: float
    updated_at: float
    # what was asked (app.domain.submit), and of the relay's own callers
    format: str | None = None
    prompt: str = ""
    record_key: str | None = None
    requested_run_id: str | None = None
    export: str | None = None
    destinations: list[dict] | None = None
    callback_url: str | None = None
    callback_headers: str | None = None
    """Sealed (app.domain.sealing): opened only to plan the callback's delivery."""
    write_back: str | None = None
    slack_reply: str | None = None
    batch_id: str | None = None
    batch_row: int | None = None
    # the hand-over to the API
    upstream_task_id: str | None = None
    run_id: str | None = None
    run_restarted: bool = False
    submitted_at: float | None = None
    submit_attempts: int = 0
    last_submit_error: str | None = None
    submit_not_before: float | None = None
    """When the API, refusing a hand-over with 429 or 503, said it could be sent again (Retry-After)."""
    submit_job: str | None = None
    """The RQ job that hands it over next, when not the first (``submit-<task id>``)."""
    throttled: int = 0
    # its progress, from webhooks and polls (app.domain.tracking, app.domain.polling)
    phase: str | None = None
    progress: int = 0
    turn_index: int | None = None
    polls: int = 0
    last_polled_at: float | None = None
    poll_slot: float | None = None
    # its end, and the follow-ups of its end
    finished_at: float | None = None
    result: dict | None = None
    error: dict | None = None
    credits_used: float | None = None
    duration_ms: int | None = None
    event_json: dict | None = None
    fanout: str | None = None
    delivery_ids: list[str] = field(default_factory=list)

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Task:
        """The one place a task's Redis strings become values. Fields this code does not know (written by
        a newer Relay during a rolling deploy) are left out rather than refused."""
        text = {name: raw.get(name) or None for name in _TEXT}
        numbers = {name: kind(raw[name]) for name, kind in _NUMBERS.items() if raw.get(name)}
        loaded = {name: json.loads(raw[name]) for name in _JSON if raw.get(name)}
        return cls(
            task_id=raw["task_id"],
            tenant_id=raw["tenant_id"],
            status=TaskStatus(raw["status"]),
            prompt=raw.get("prompt", ""),
            run_restarted=raw.get("run_restarted") == "1",
            delivery_ids=loaded.pop("delivery_ids", []),
            **text,
            **numbers,
            **loaded,
        )

    def to_hash(self) -> dict[str, str]:
        """The fields as Redis holds them (what ``from_hash`` reads back); None is left out."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return as_stored({name: value for name, value in values.items() if value is not None})

    def with_fields(self, **changes: Any) -> Task:
        """The task as it reads once ``changes`` are written: decoded from what Redis will hold, so the
        copy shows a written number exactly as a later read will."""
        return Task.from_hash({**self.to_hash(), **as_stored(changes)})


_TEXT = (
    "format",
    "record_key",
    "requested_run_id",
    "export",
    "callback_url",
    "callback_headers",
    "write_back",
    "slack_reply",
    "batch_id",
    "upstream_task_id",
    "run_id",
    "last_submit_error",
    "submit_job",
    "phase",
    "fanout",
)


def _whole(raw: str) -> int:
    return int(float(raw))  # a count the API sent as 12.0 still reads


_NUMBERS: dict[str, Callable[[str], float | int]] = {
    "created_at": float,
    "updated_at": float,
    "batch_row": _whole,
    "submitted_at": float,
    "submit_attempts": _whole,
    "submit_not_before": float,
    "throttled": _whole,
    "progress": _whole,
    "turn_index": _whole,
    "polls": _whole,
    "last_polled_at": float,
    "poll_slot": float,
    "finished_at": float,
    "credits_used": float,
    "duration_ms": _whole,
}
_JSON = (
    "destinations",
    "result",
    "error",
    "event_json",
    "delivery_ids",
)


class TaskStore:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        tenants: TenantStore,
        records: RecordStore,
        events: EventLog,
        usage: UsageRows,
    ):
        """The other stores: a task's end is counted in its tenant, its record, the tenant's event log and
        the day's usage row, in the same script."""
        self._redis, self._prefix = redis, prefix
        self._tenants, self._records, self._events, self._usage = tenants, records, events, usage
        self._transition = redis.register_script(_TRANSITION)
        self._handed_over = redis.register_script(_HANDED_OVER)
        self._finish = redis.register_script(_FINISH)
        self.watch_key = prefix + "tasks:watch"
        self.recent_key = prefix + "tasks:recent"
        """Every tenant's tasks by creation time (the dashboard's list); retention removes them with the tasks."""
        self.ended_key = prefix + "tasks:ended"
        """Ended tasks by when they ended: what the retention sweep walks (app/domain/retention.py)."""

    def key_for(self, task_id: str) -> str:
        return f"{self._prefix}task:{task_id}"

    def tenant_key(self, tenant_id: str) -> str:
        """A tenant's tasks by creation time: what GET /v1/tasks pages through, newest first."""
        return f"{self._prefix}tasks:t:{tenant_id}"

    def create(
        self,
        tenant_id: str,
        watch_at: float | None = None,
        task_id: str | None = None,
        with_task: Callable[[Any, str], None] | None = None,
        **fields: Any,
    ) -> Task:
        """A new task in `pending_submit`; ``watch_at``: when the reconciler should look at it if nothing has
        moved it on by then; ``task_id``: one chosen beforehand (a batch row's, so a crash never makes two);
        ``with_task(pipe, task_id)``: more writes made in the same transaction (its record's)."""
        task_id, now = task_id or new_id("tsk"), time.time()
        record = {
            "task_id": task_id,
            "tenant_id": tenant_id,
            "status": TaskStatus.PENDING_SUBMIT,
            "progress": 0,
            "created_at": now,
            "updated_at": now,
            **fields,
        }
        stored = as_stored(record)
        pipe = self._redis.pipeline()
        pipe.hset(self.key_for(task_id), mapping=stored)
        pipe.zadd(self.recent_key, {task_id: now})
        pipe.zadd(self.tenant_key(tenant_id), {task_id: now})
        if watch_at is not None:
            pipe.zadd(self.watch_key, {task_id: watch_at})
        if with_task is not None:
            with_task(pipe, task_id)
        pipe.execute()
        # what Redis now holds: not read back
        return Task.from_hash(stored)

    def recent(self, limit: int = 50) -> list[Task]:
        """The newest tasks of every tenant (the operator's dashboard)."""
        return self.many(list(self._redis.zrevrange(self.recent_key, 0, limit - 1)))

    def get(self, task_id: str, tenant_id: str | None = None) -> Task | None:
        raw = self._redis.hgetall(self.key_for(task_id))
        if not raw or (tenant_id is not None and raw["tenant_id"] != tenant_id):
            return None
        return Task.from_hash(raw)

    def many(self, task_ids: list[str]) -> list[Task]:
        """The tasks that still exist, in order, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hgetall(self.key_for(task_id))
        return [Task.from_hash(raw) for raw in pipe.execute() if raw]

    def set(self, task_id: str, pipe=None, **fields: Any) -> None:
        """Fields that never race with a terminal transition (links, attempt counters), at once or queued on
        ``pipe``."""
        (pipe or self._redis).hset(
            self.key_for(task_id), mapping={k: to_field(v) for k, v in fields.items()}
        )

    def handed_over(
        self, task: Task, fields: dict[str, Any], status: TaskStatus, watch_at: float
    ) -> tuple[bool, TaskStatus, Task | None]:
        """Record that the API took ``task`` (as read before): ``fields`` (its ids) written, ``status`` its
        status if it is still `pending_submit`, and, unless it has ended, on the reconciler's watch list
        until ``watch_at``, in one round trip. A task Redis no longer has is stored again first, as it was
        read: a failover took the primary before the task's creation reached a replica (possible with
        RELAY_REDIS_MIN_REPLICAS=0) while the API took it. Returns whether it was stored again, its status,
        and the task as it now reads when only this call changed it since ``task`` was read (else None)."""
        now = time.time()
        stored = field_pairs(task.to_hash())
        restored, moved, current = self._handed_over(
            keys=[
                self.key_for(task.task_id),
                self.recent_key,
                self.tenant_key(task.tenant_id),
                self.watch_key,
            ],
            args=[
                task.created_at,
                status,
                now,
                watch_at,
                len(stored),
                *stored,
                *field_pairs(fields),
            ],
        )
        if moved and task.status == TaskStatus.PENDING_SUBMIT:
            return (
                bool(restored),
                TaskStatus(current),
                task.with_fields(**fields, status=status, updated_at=now),
            )
        return bool(restored), TaskStatus(current), None

    def finish(
        self,
        task: Task,
        fields: dict[str, Any],
        now: float,
        look_again_at: float,
        usage_life: int,
    ) -> bool:
        """End the task with ``fields`` (its terminal status, ``event_json`` the event announcing it), unless
        it has ended: counted in its tenant, its record and the day's usage row (kept ``usage_life``
        seconds), its event logged, and on the reconciler's watch list until ``look_again_at`` in case its
        follow-ups are lost. True: this call ended it."""
        tenant_id, record = task.tenant_id, task.record_key or ""
        args = [
            number(fields.get("credits_used")),
            int(float(fields.get("duration_ms") or 0)),
            fields["event_json"],
            usage_life,
            record_prefix(record),
            record,
            now,
            look_again_at,
            *field_pairs(fields),
        ]
        keys = [
            self.key_for(task.task_id),
            self.watch_key,
            self._tenants.key_for(tenant_id),
            self._records.key_for(tenant_id, record) if record else "",
            self._events.key_for(tenant_id),
            self._usage.key_for(tenant_id, day_of(now)),
            self.ended_key,
        ]
        return self._finish(keys=keys, args=args) == 1

    def status(self, task_id: str) -> str | None:
        """The stored status alone (None: no such task)."""
        return self._redis.hget(self.key_for(task_id), "status")

    def transition(self, task_id: str, expect: TaskStatus | None = None, **fields: Any) -> bool:
        """Update a task that has not ended (and is in status ``expect``, when given)."""
        fields.setdefault("updated_at", time.time())
        argv = [expect or "", *field_pairs(fields)]
        return self._transition(keys=[self.key_for(task_id), self.watch_key], args=argv) == 1

    # -- the reconciler's watch list -----------------------------------------------------------------

    def watch(self, task_id: str, check_at: float) -> None:
        self._redis.zadd(self.watch_key, {task_id: check_at})

    def due(self, now: float, limit: int = 500) -> list[str]:
        return list(self._redis.zrangebyscore(self.watch_key, "-inf", now, start=0, num=limit))

    def unwatch(self, task_id: str) -> None:
        self._redis.zrem(self.watch_key, task_id)

    def follow_ups_done(self, task_id: str, with_done: Callable[[Any], None] | None = None) -> None:
        """An ended task's follow-ups have run: it says so, and the reconciler, which watched it in case they
        were lost, no longer does. ``with_done(pipe)`` queues more writes to make in the same round trip."""
        pipe = self._redis.pipeline()
        pipe.hset(self.key_for(task_id), "fanout", "done")
        pipe.zrem(self.watch_key, task_id)
        if with_done is not None:
            with_done(pipe)
        pipe.execute()

    def ended_before(self, when: float, limit: int) -> list[str]:
        """Tasks that ended before ``when``, the earliest first (what retention walks)."""
        return list(self._redis.zrangebyscore(self.ended_key, "-inf", when, start=0, num=limit))

    def look_again_at(self, pipe, task_ids: list[str] | set[str], when: float) -> None:
        """Queue on ``pipe``: retention looks at these ended tasks again at ``when``."""
        if task_ids:
            pipe.zadd(self.ended_key, dict.fromkeys(task_ids, when))

    def not_ended_any_more(self, pipe, task_ids: list[str]) -> None:
        """Queue on ``pipe``: gone some other way, retention no longer walks these."""
        if task_ids:
            pipe.zrem(self.ended_key, *task_ids)

    def reseal_all(self, reseal: Callable[[str], str]) -> int:
        """Every task's sealed fields re-encrypted (``reseal``: the newest key's); returns how many tasks
        had any. Plain callback headers (a task stored before they were sealed) are left as they are."""
        swapper, count = Swapper(self._redis), 0
        for task_id in self._redis.zrange(self.recent_key, 0, -1):
            key = self.key_for(task_id)
            changed = [
                swapper.swap(key, "destinations", lambda raw: reseal_refs(raw, reseal)),
                swapper.swap(key, "slack_reply", reseal),
                swapper.swap(
                    key, "callback_headers", lambda raw: raw if raw.startswith("{") else reseal(raw)
                ),
            ]
            count += any(changed)
        return count

    def forget(self, pipe, task_id: str, tenant_id: str) -> None:
        """Queue on ``pipe`` the removal of the task and its places in the indexes (retention)."""
        pipe.delete(self.key_for(task_id))
        for index in (self.recent_key, self.watch_key, self.ended_key, self.tenant_key(tenant_id)):
            pipe.zrem(index, task_id)

    def newest(
        self, index: str, before: float | None, after: float | None, count: int
    ) -> list[tuple[str, float]]:
        """Up to ``count`` (task id, created at) of a time-ordered index (a tenant's, or a record's), newest
        first, created before ``before`` (excluded: the cursor of the page before) and at ``after`` or later."""
        top = f"({before!r}" if before is not None else "+inf"
        bottom = repr(after) if after is not None else "-inf"
        return [
            (task_id, float(score))
            for task_id, score in self._redis.zrevrangebyscore(
                index, top, bottom, start=0, num=count, withscores=True
            )
        ]


def field_pairs(fields: dict[str, Any]) -> list:
    """The fields as a Lua script takes them: name, value, name, value..."""
    return [item for name, value in fields.items() for item in (name, to_field(value))]


def as_stored(fields: dict[str, Any]) -> dict[str, str]:
    """The fields as the strings Redis keeps of them (redis-py writes a number as its repr)."""
    return {name: str(to_field(value)) for name, value in fields.items()}


def to_field(value: Any) -> str | int | float:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    return value


def reseal_refs(raw: str, reseal: Callable[[str], str]) -> str:
    """A stored list of destination refs (JSON) with each inline one's ``sealed_config`` resealed."""
    refs = json.loads(raw)
    return json.dumps(
        [
            {**ref, "sealed_config": reseal(ref["sealed_config"])}
            if "sealed_config" in ref
            else ref
            for ref in refs
        ]
    )
