"""Fan-out of finished tasks: one delivery per (task, destination), its record, and when it is attempted.

A delivery is recorded before it is queued, with an id derived from the task and the slot, so planning
twice creates nothing new. An attempt due now goes to the delivery lane, a later one (after a failure's
backoff) is an RQ job; both run app.work.delivering. Permanent errors and exhausted attempts land in the
dead-letter list, from which `relay deliveries replay` and the API re-run them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rq import Retry

from app.core.ids import digest
from app.core.states import DELIVERY_SETTLED, TaskStatus, lua_set
from app.stores import lane_stream, queues
from app.stores.context import Context
from app.stores.events import iso
from app.stores.tasks import Task, field_pairs, to_field
from connectors import registry

log = logging.getLogger(__name__)

WRITE_BACK_START_SLOT, WRITE_BACK_SLOT = "write-back:start", "write-back"
"""The two writes to a task's record: Generating as it starts, then Ready or Failed (app.domain.write_back)."""
_CRASH_RETRY = Retry(max=3, interval=[5, 30, 120])  # a worker killed mid-job: RQ runs the job again
RECOVERED_AFTER_SECONDS = 1.0
"""When a retry whose job went missing is tried again (the reconciler found it)."""


# -- records ---------------------------------------------------------------------------------------


def key_for(ctx: Context, delivery_id: str) -> str:
    return ctx.key("delivery", delivery_id)


def open_key(ctx: Context) -> str:
    """Deliveries not done yet, scored by when the reconciler should look at them if still not done."""
    return ctx.key("deliveries", "open")


def dead_letter_key(ctx: Context) -> str:
    """Dead deliveries, scored by when they died."""
    return ctx.key("deadletter")


def states(ctx: Context, delivery_ids: list[str]) -> dict[str, str]:
    """The state of each delivery that still has a record, in one round trip."""
    pipe = ctx.redis.pipeline(transaction=False)
    for delivery_id in delivery_ids:
        pipe.hget(key_for(ctx, delivery_id), "state")
    return {d: s for d, s in zip(delivery_ids, pipe.execute(), strict=True) if s is not None}


def forget(ctx: Context, pipe, delivery_ids: list[str]) -> None:
    """Queue on ``pipe`` the removal of these deliveries' records and their places in the indexes."""
    if delivery_ids:
        pipe.delete(*(key_for(ctx, d) for d in delivery_ids))
        pipe.zrem(dead_letter_key(ctx), *delivery_ids)
        pipe.zrem(open_key(ctx), *delivery_ids)


def get(ctx: Context, delivery_id: str, tenant_id: str | None = None) -> dict | None:
    raw = ctx.redis.hgetall(key_for(ctx, delivery_id))
    if not raw or (tenant_id is not None and raw["tenant_id"] != tenant_id):
        return None
    return raw


def update(ctx: Context, delivery_id: str, pipe=None, **fields: Any) -> None:
    """Set fields of the record, at once or queued on ``pipe``."""
    fields.setdefault("updated_at", time.time())
    (pipe or ctx.redis).hset(
        key_for(ctx, delivery_id), mapping={k: to_field(v) for k, v in fields.items()}
    )


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


def begin(
    ctx: Context, delivery_id: str, target: tuple[str, str] | None = None
) -> tuple[dict | None, str | None, bool]:
    """Start an attempt in one round trip: the record as it was (None: gone), the stored target when its
    (key, field) is given, and whether the attempt started. It does not for a delivery delivered or dead,
    nor for one whose every attempt so far ended with its worker (left "delivering" past the last one)."""
    keys, args = [key_for(ctx, delivery_id)], [ctx.config.delivery_max_attempts, time.time()]
    if target:
        keys.append(target[0])
        args.append(target[1])
    pairs, stored, started = ctx.script("delivery-begin", _BEGIN)(keys=keys, args=args)
    record = dict(zip(pairs[::2], pairs[1::2], strict=True))
    return record or None, stored, bool(started)


def target_of(ctx: Context, fields: dict) -> tuple[str, str] | None:
    """Where what a delivery goes to is saved apart from it (a saved destination, a hook): (key, field).
    ``fields``: its record, or its lane entry, which carries the same ids."""
    tenant_id = fields.get("tenant_id")
    if tenant_id and fields.get("destination_id"):
        return ctx.destinations.key_for(tenant_id), fields["destination_id"]
    if tenant_id and fields.get("hook_id"):
        return ctx.hooks.key_for(tenant_id), fields["hook_id"]
    return None


def view(delivery: dict) -> dict:
    def when(name: str) -> str | None:
        return iso(float(delivery[name])) if delivery.get(name) else None

    return {
        "delivery_id": delivery["delivery_id"],
        "kind": delivery["kind"],
        "destination_id": delivery.get("destination_id") or None,
        "state": delivery["state"],
        "attempts": int(delivery.get("attempts") or 0),
        "last_error": delivery.get("last_error") or None,
        "location": delivery.get("location") or None,
        "export": delivery.get("export") or None,
        "next_attempt_at": when("next_attempt_at"),
        "delivered_at": when("delivered_at"),
    }


def for_task(ctx: Context, task: Task) -> list[dict]:
    return _views(ctx, task.delivery_ids)


def for_batch(ctx: Context, batch: dict) -> list[dict]:
    """The deliveries of the batch's end (batch.completed)."""
    return _views(ctx, json.loads(batch.get("delivery_ids") or "[]"))


def _views(ctx: Context, delivery_ids: list[str]) -> list[dict]:
    return [view(d) for i in delivery_ids if (d := get(ctx, i))]


def dead_letters(ctx: Context, tenant_id: str | None = None) -> list[dict]:
    ids = ctx.redis.zrevrange(dead_letter_key(ctx), 0, -1)
    return [d for i in ids if (d := get(ctx, i, tenant_id))]


# -- planning --------------------------------------------------------------------------------------


def plan(ctx: Context, task: Task, event: dict) -> None:
    """The finish hook: record and enqueue every delivery this task's ending calls for, and list them on the
    task, in one transaction (one round trip)."""
    slots: list[tuple[str, dict]] = []
    if task.status == TaskStatus.COMPLETED:
        slots += [(f"destination:{n}", ref) for n, ref in enumerate(task.destinations or [])]
    if task.callback_url:
        slots.append(_callback_slot(task.callback_url, task.callback_headers or {}))
    if task.write_back:  # the record the document belongs to: Ready with the file, or Failed
        slots.append((WRITE_BACK_SLOT, {"id": task.write_back}))
    if task.slack_reply:  # an /overten command: tell the person who ran it how it ended
        slots.append(
            (
                "slack-reply",
                {"kind": "slack_reply", "config": json.loads(ctx.box.open(task.slack_reply))},
            )
        )
    slots += _hook_slots(ctx, task.tenant_id, event["type"])
    event = with_links(ctx, event)
    pipe = ctx.redis.pipeline()
    ids = [_record(ctx, pipe, task, event, slot, ref) for slot, ref in slots]
    # e.g. the start write-back
    earlier = [i for i in task.delivery_ids if i not in ids]
    if ids:
        ctx.tasks.set(task.task_id, pipe=pipe, delivery_ids=earlier + ids)
    for delivery_id in ids:  # after the records: the lane adds only a delivery still pending
        enqueue(ctx, delivery_id, pipe=pipe)
    pipe.execute()


@dataclass(frozen=True)
class Owner:
    """What a delivery of something else than a task is of: its id where a task's would be, and its tenant.
    It has what ``_record`` reads of a Task."""

    task_id: str
    tenant_id: str
    export: str | None = None


def plan_event(
    ctx: Context, owner: Owner, event: dict, destinations: list[dict], callback_url: str = ""
) -> list[str]:
    """An event of something else than a task (a batch, a budget: ``owner``):
    batch.completed, with the manifest for the batch's destinations, and budget.threshold, a message for a
    budget's alert destinations; and one POST to the callback URL, if any, and to each hook subscribed to the
    event. Recorded and queued like a task's."""
    slots = [(f"destination:{n}", ref) for n, ref in enumerate(destinations)]
    slots += ([_callback_slot(callback_url, {})] if callback_url else []) + _hook_slots(
        ctx, owner.tenant_id, event["type"]
    )
    pipe = ctx.redis.pipeline()
    ids = [_record(ctx, pipe, owner, event, slot, ref) for slot, ref in slots]
    for delivery_id in ids:
        enqueue(ctx, delivery_id, pipe=pipe)
    pipe.execute()
    return ids


def _callback_slot(url: str, headers: dict) -> tuple[str, dict]:
    return "callback", {"kind": "callback", "config": {"url": url, "headers": headers}}


def _hook_slots(ctx: Context, tenant_id: str, event_type: str) -> list[tuple[str, dict]]:
    return [
        (f"hook:{hook['id']}", {"kind": "webhook", "hook_id": hook["id"]})
        for hook in ctx.hooks.list(tenant_id, event_type)
    ]


# KEYS: the delivery record. ARGV: its field/value pairs. Nothing is written for a delivery planned before (the
# finish hook ran again after a crash): it may have been attempted since.
_RECORD = """
if redis.call('HSETNX', KEYS[1], 'delivery_id', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


def record(ctx: Context, task: Task, event: dict, slot: str, ref: dict, pipe=None) -> str:
    """Record one delivery of the task (not queued), as plan does for each of its slots, at once or queued on
    ``pipe``; returns its id."""
    own = pipe is None
    pipe = ctx.redis.pipeline(transaction=False) if own else pipe
    delivery_id = _record(ctx, pipe, task, event, slot, ref)
    if own:
        pipe.execute()
    return delivery_id


def delivery_id_for(task_id: str, slot: str) -> str:
    return "dlv_" + digest(f"{task_id}:{slot}", 26).upper()


def _record(ctx: Context, pipe, task: Task | Owner, event: dict, slot: str, ref: dict) -> str:
    """Queue on ``pipe`` the record of one delivery, unless it was planned before; returns its id."""
    delivery_id = delivery_id_for(task.task_id, slot)
    record: dict[str, Any] = {
        "tenant_id": task.tenant_id,
        "task_id": task.task_id,
        "state": "pending",
        "attempts": 0,
        "created_at": time.time(),
        "event": event,
        "export": "",
    }
    # a saved destination: read when delivering, so a fixed config applies on replay
    if ref.get("id"):
        saved = ctx.destinations.get(task.tenant_id, ref["id"])
        record.update(
            kind=saved["kind"] if saved else "missing",
            destination_id=ref["id"],
            export=ref.get("export") or (saved or {}).get("export") or task.export or "",
        )
    elif ref.get("hook_id"):
        record.update(kind="webhook", hook_id=ref["hook_id"])
    else:
        exported = registry.KINDS[ref["kind"]].needs_document
        record.update(
            kind=ref["kind"],
            config=ctx.box.seal(json.dumps(ref.get("config") or {})),
            export=(ref.get("export") or task.export or "") if exported else "",
        )
    if event["type"] in ("batch.completed", "budget.threshold"):
        record["export"] = ""  # a batch's manifest goes as it is; an alert has no file
    record["updated_at"] = time.time()
    ctx.script("delivery-record", _RECORD)(
        keys=[key_for(ctx, delivery_id)], args=[delivery_id, *field_pairs(record)], client=pipe
    )
    return delivery_id


def enqueue(ctx: Context, delivery_id: str, delay: float = 0.0, pipe=None, tag: str = "") -> None:
    """An attempt due now goes to the delivery lane (app.stores.lane_stream), at once or queued on ``pipe``;
    a later one is an RQ job RQ's scheduler releases when its backoff is over (``tag`` tells apart jobs for
    the same attempt: one waiting for its destination's pace, from the job that ran into it)."""
    recheck_at = time.time() + delay + ctx.config.delivery_recheck_seconds
    if delay <= 0:
        lane_stream.add(
            ctx, delivery_id, key_for(ctx, delivery_id), open_key(ctx), recheck_at, pipe=pipe
        )
        return
    assert pipe is None, "a later attempt is an RQ job, enqueued on its own"
    attempt = int(ctx.redis.hget(key_for(ctx, delivery_id), "attempts") or 0)
    job_id = f"deliver-{delivery_id}-{attempt}" + (f"-{tag}" if tag else "")
    # named on the record before it exists: the reconciler looks for this job, and plans another only if it
    # is missing (a crash right here), never beside a job it could not name
    ctx.redis.hset(key_for(ctx, delivery_id), "retry_job", job_id)
    # result_ttl=0: the delivery record is the result; keeping RQ's copy only costs writes per job
    # RQ keeps a scheduled time in whole seconds, rounded down: a second more, so a retry never runs before
    # the Retry-After it was given
    ctx.queue(queues.DELIVER).enqueue_in(
        timedelta(seconds=delay + 1),
        queues.job("deliver"),
        delivery_id,
        job_id=job_id,
        job_timeout=3600,
        result_ttl=0,
        failure_ttl=ctx.config.job_failure_ttl_seconds,
        retry=_CRASH_RETRY,
    )
    ctx.redis.zadd(open_key(ctx), {delivery_id: recheck_at})


def recover_lost(ctx: Context, limit: int = 500) -> int:
    """The reconciler's look at deliveries overdue: one whose lane entry or RQ job was lost (a crash before
    it was stored, a worker that died or lost Redis's reply before running the job) is queued again.
    Returns how many were."""
    now, recovered = time.time(), 0
    for delivery_id in ctx.redis.zrangebyscore(open_key(ctx), "-inf", now, start=0, num=limit):
        record = get(ctx, delivery_id)
        if record is None or record["state"] in DELIVERY_SETTLED:
            ctx.redis.zrem(open_key(ctx), delivery_id)
            continue
        ctx.redis.zadd(open_key(ctx), {delivery_id: now + ctx.config.delivery_recheck_seconds})
        if record["state"] == "delivering":
            continue  # running, or its worker died: the lane's lease (or RQ's, for a retry) brings it back
        if record["state"] == "pending":
            lost = not lane_stream.waiting(ctx, record.get("lane_entry", ""))
            if lost:
                log.warning("delivery %s was not in the delivery lane; added again", delivery_id)
                enqueue(ctx, delivery_id)
            recovered += lost
            continue
        job_id = (
            record.get("retry_job") or f"deliver-{delivery_id}-{int(record.get('attempts') or 0)}"
        )
        status, lost = queues.requeue_if_lost(ctx, ctx.queue(queues.DELIVER), job_id)
        if status is None:
            # a retry planned, but its job never made it into Redis: a job again (the lane takes only a delivery
            # never attempted, so the lane cannot take this one)
            log.warning("delivery %s had no job for its retry; planned again", delivery_id)
            enqueue(ctx, delivery_id, RECOVERED_AFTER_SECONDS, tag="recovered")
        recovered += lost or status is None
    return recovered


def replay(ctx: Context, delivery_id: str) -> bool:
    """Run a dead (or stuck) delivery again from scratch. False when it is already delivered."""
    delivery = get(ctx, delivery_id)
    if delivery is None or delivery["state"] == "delivered":
        return False
    died_at = ctx.redis.zscore(dead_letter_key(ctx), delivery_id)
    if (
        ctx.redis.zrem(dead_letter_key(ctx), delivery_id)
        and delivery["state"] == "dead"
        and died_at
    ):
        # counted by its next outcome
        ctx.usage.uncount_dead(delivery["tenant_id"], delivery["kind"], died_at)
    update(ctx, delivery_id, state="pending", attempts=0, last_error="", next_attempt_at="")
    enqueue(ctx, delivery_id)
    return True


# -- links to the file ---------------------------------------------------------------------------


def document_links(ctx: Context, view: dict) -> dict:
    """Links for a completed task that always lead to a fresh download (and export), for no-code tools:
    the API's own download URLs expire after 24 hours."""
    if view.get("status") != "completed" or not view.get("task_id"):
        return {}
    links = {"file_url": file_link(ctx, view["task_id"])}
    if view.get("export"):
        links["export_url"] = file_link(ctx, view["task_id"], view["export"])
    return links


def with_links(ctx: Context, event: dict) -> dict:
    data = event.get("data") or {}
    return {**event, "data": {**data, **document_links(ctx, data)}}


def file_link(ctx: Context, task_id: str, export: str = "", life_seconds: int | None = None) -> str:
    """``life_seconds``: how long the link works, when not RELAY_FILES_LINK_TTL_SECONDS."""
    return files_url(
        ctx, {"t": task_id, "x": export, **({"l": life_seconds} if life_seconds else {})}
    )


def files_url(ctx: Context, payload: dict) -> str:
    """A signed /files/{token} link (app/web/files.py): a task's file, or a batch's manifest or ZIP."""
    return f"{ctx.config.public_url.rstrip('/')}/files/{ctx.tokens.file(payload)}"
