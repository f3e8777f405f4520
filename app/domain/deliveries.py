"""Fan-out of finished tasks: one delivery per (task, destination), its record, and when it is attempted.

A delivery is recorded before it is queued, with an id derived from the task and the slot, so planning
twice creates nothing new. An attempt due now goes to the delivery lane, a later one (after a failure's
backoff) is an RQ job; both run app.work.delivering. Permanent errors and exhausted attempts land in the
dead-letter list, from which `relay deliveries replay` and the API re-run them.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.core.crypto import SecretBox
from app.core.ids import digest
from app.core.states import DELIVERY_SETTLED, DeliveryState, TaskStatus
from app.domain import links, sealing
from app.stores import queues
from app.stores.batches import Batch
from app.stores.deliveries import DeliveryRecord, DeliveryStore
from app.stores.destinations import DestinationStore, HookStore
from app.stores.events import iso
from app.stores.lane_stream import LaneStream
from app.stores.primary import Primary
from app.stores.queues import Queues
from app.stores.tasks import Task, TaskStore
from app.stores.usage import UsageRows
from connectors import registry
from connectors.base import DeliveryError, Gone, Outcome, Retryable, Throttled
from connectors.retry_after import CEILING_SECONDS as RETRY_AFTER_CEILING


class Needs(links.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    box: SecretBox
    primary: Primary
    queues: Queues
    tasks: TaskStore
    destinations: DestinationStore
    hooks: HookStore
    deliveries: DeliveryStore
    usage: UsageRows
    lane: LaneStream


log = logging.getLogger(__name__)

WRITE_BACK_START_SLOT, WRITE_BACK_SLOT = "write-back:start", "write-back"
"""The two writes to a task's record: Generating as it starts, then Ready or Failed (app.domain.write_back)."""
RECOVERED_AFTER_SECONDS = 1.0
"""When a retry whose job went missing is tried again (the reconciler found it)."""


# -- records ---------------------------------------------------------------------------------------


def target_of(
    ctx: Needs, tenant_id: str | None, destination_id: str | None, hook_id: str | None
) -> tuple[str, str] | None:
    """Where what a delivery goes to is saved apart from it (a saved destination, a hook): (key, field).
    The ids are its record's, or its lane entry's, which carries the same."""
    if tenant_id and destination_id:
        return ctx.destinations.key_for(tenant_id), destination_id
    if tenant_id and hook_id:
        return ctx.hooks.key_for(tenant_id), hook_id
    return None


def view(delivery: DeliveryRecord) -> dict:
    def when(at: float | None) -> str | None:
        return iso(at) if at is not None else None

    return {
        "delivery_id": delivery.delivery_id,
        "kind": delivery.kind,
        "destination_id": delivery.destination_id,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "location": delivery.location,
        "export": delivery.export,
        "next_attempt_at": when(delivery.next_attempt_at),
        "delivered_at": when(delivery.delivered_at),
    }


def for_task(ctx: Needs, task: Task) -> list[dict]:
    return _views(ctx, task.delivery_ids)


def for_batch(ctx: Needs, batch: Batch) -> list[dict]:
    """The deliveries of the batch's end (batch.completed)."""
    return _views(ctx, batch.delivery_ids)


def _views(ctx: Needs, delivery_ids: list[str]) -> list[dict]:
    return [view(d) for i in delivery_ids if (d := ctx.deliveries.get(i))]


# -- planning --------------------------------------------------------------------------------------


def plan(ctx: Needs, task: Task, event: dict) -> None:
    """The finish hook: record and enqueue every delivery this task's ending calls for, and list them on the
    task, in one transaction (one round trip)."""
    slots: list[tuple[str, dict]] = []
    if task.status == TaskStatus.COMPLETED:
        slots += [(f"destination:{n}", ref) for n, ref in enumerate(task.destinations or [])]
    if task.callback_url:
        headers = sealing.open_headers(ctx.box, task.callback_headers)
        slots.append(_callback_slot(task.callback_url, headers))
    if task.write_back:  # the record the document belongs to: Ready with the file, or Failed
        slots.append((WRITE_BACK_SLOT, {"id": task.write_back}))
    if task.slack_reply:  # an /overten command: tell the person who ran it how it ended
        # sealed as the command's job made it, and kept so: opened only to deliver it
        slots.append(("slack-reply", {"kind": "slack_reply", "sealed_config": task.slack_reply}))
    slots += _hook_slots(ctx, task.tenant_id, event["type"])
    event = links.with_links(ctx, event)
    pipe = ctx.primary.pipeline()
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
    ctx: Needs,
    owner: Owner,
    event: dict,
    destinations: list[dict],
    callback_url: str = "",
    again: int = 0,
) -> list[str]:
    """An event of something else than a task (a batch, a budget: ``owner``):
    batch.completed, with the manifest for the batch's destinations, and budget.threshold, a message for a
    budget's alert destinations; and one POST to the callback URL, if any, and to each hook subscribed to the
    event. Recorded and queued like a task's. ``again``: how many times the owner ended before (a
    retried batch ends again): its deliveries are then new ones, not those planned before."""
    slots = [(f"destination:{n}", ref) for n, ref in enumerate(destinations)]
    slots += ([_callback_slot(callback_url, {})] if callback_url else []) + _hook_slots(
        ctx, owner.tenant_id, event["type"]
    )
    if again:
        slots = [(f"{slot}#{again}", ref) for slot, ref in slots]
    pipe = ctx.primary.pipeline()
    ids = [_record(ctx, pipe, owner, event, slot, ref) for slot, ref in slots]
    for delivery_id in ids:
        enqueue(ctx, delivery_id, pipe=pipe)
    pipe.execute()
    return ids


def _callback_slot(url: str, headers: dict) -> tuple[str, dict]:
    return "callback", {"kind": "callback", "config": {"url": url, "headers": headers}}


def _hook_slots(ctx: Needs, tenant_id: str, event_type: str) -> list[tuple[str, dict]]:
    return [
        (f"hook:{hook.id}", {"kind": "webhook", "hook_id": hook.id})
        for hook in ctx.hooks.list(tenant_id, event_type)
    ]


def record(ctx: Needs, task: Task, event: dict, slot: str, ref: dict, pipe=None) -> str:
    """Record one delivery of the task (not queued), as plan does for each of its slots, at once or queued on
    ``pipe``; returns its id."""
    own = pipe is None
    pipe = ctx.primary.pipeline(transaction=False) if own else pipe
    delivery_id = _record(ctx, pipe, task, event, slot, ref)
    if own:
        pipe.execute()
    return delivery_id


def delivery_id_for(task_id: str, slot: str) -> str:
    return "dlv_" + digest(f"{task_id}:{slot}", 26).upper()


def _record(ctx: Needs, pipe, task: Task | Owner, event: dict, slot: str, ref: dict) -> str:
    """Queue on ``pipe`` the record of one delivery, unless it was planned before; returns its id."""
    delivery_id = delivery_id_for(task.task_id, slot)
    record: dict[str, Any] = {
        "tenant_id": task.tenant_id,
        "task_id": task.task_id,
        "state": DeliveryState.PENDING,
        "attempts": 0,
        "created_at": time.time(),
        "event": event,
        "export": "",
    }
    # a saved destination: read when delivering, so a fixed config applies on replay
    if ref.get("id"):
        saved = ctx.destinations.get(task.tenant_id, ref["id"])
        record.update(
            kind=saved.kind if saved else "missing",
            destination_id=ref["id"],
            export=ref.get("export") or (saved.export if saved else None) or task.export or "",
        )
    elif ref.get("hook_id"):
        record.update(kind="webhook", hook_id=ref["hook_id"])
    else:
        exported = registry.KINDS[ref["kind"]].needs_document
        record.update(
            kind=ref["kind"],
            config=ref.get(sealing.SEALED) or ctx.box.seal(json.dumps(ref.get("config") or {})),
            export=(ref.get("export") or task.export or "") if exported else "",
        )
    if event["type"] in ("batch.completed", "budget.threshold"):
        record["export"] = ""  # a batch's manifest goes as it is; an alert has no file
    record["updated_at"] = time.time()
    ctx.deliveries.record(pipe, delivery_id, record)
    return delivery_id


def enqueue(ctx: Needs, delivery_id: str, delay: float = 0.0, pipe=None, tag: str = "") -> None:
    """An attempt due now goes to the delivery lane (app.stores.lane_stream), at once or queued on ``pipe``;
    a later one is an RQ job RQ's scheduler releases when its backoff is over (``tag`` tells apart jobs for
    the same attempt: one waiting for its destination's pace, from the job that ran into it)."""
    store = ctx.deliveries
    recheck_at = time.time() + delay + ctx.config.delivery_recheck_seconds
    if delay <= 0:
        store.to_lane(delivery_id, recheck_at, pipe=pipe)
        return
    assert pipe is None, "a later attempt is an RQ job, enqueued on its own"
    job_id = f"deliver-{delivery_id}-{store.attempts(delivery_id)}" + (f"-{tag}" if tag else "")
    # named on the record before it exists: the reconciler looks for this job, and plans another only if it
    # is missing (a crash right here), never beside a job it could not name
    store.name_retry(delivery_id, job_id)
    ctx.queues.delivery_retry(delivery_id, job_id, delay)
    store.look_again_at(delivery_id, recheck_at)


def recover_lost(ctx: Needs, limit: int = 500) -> int:
    """The reconciler's look at deliveries overdue: one whose lane entry or RQ job was lost (a crash before
    it was stored, a worker that died or lost Redis's reply before running the job) is queued again.
    Returns how many were."""
    now, recovered, store = time.time(), 0, ctx.deliveries
    for delivery_id in store.overdue(now, limit):
        record = store.get(delivery_id)
        if record is None or record.state in DELIVERY_SETTLED:
            store.unsettle(delivery_id)
            continue
        store.look_again_at(delivery_id, now + ctx.config.delivery_recheck_seconds)
        if record.state == DeliveryState.DELIVERING:
            continue  # running, or its worker died: the lane's lease (or RQ's, for a retry) brings it back
        if record.state == DeliveryState.PENDING:
            lost = not ctx.lane.waiting(record.lane_entry or "")
            if lost:
                log.warning("delivery %s was not in the delivery lane; added again", delivery_id)
                enqueue(ctx, delivery_id)
            recovered += lost
            continue
        job_id = record.retry_job or f"deliver-{delivery_id}-{record.attempts}"
        status, lost = ctx.queues.requeue_if_lost(ctx.queues.get(queues.DELIVER), job_id)
        if status is None:
            # a retry planned, but its job never made it into Redis: a job again (the lane takes only a delivery
            # never attempted, so the lane cannot take this one)
            log.warning("delivery %s had no job for its retry; planned again", delivery_id)
            enqueue(ctx, delivery_id, RECOVERED_AFTER_SECONDS, tag="recovered")
        recovered += lost or status is None
    return recovered


def replay(ctx: Needs, delivery_id: str) -> bool:
    """Run a dead (or stuck) delivery again from scratch. False when it is already delivered."""
    delivery = ctx.deliveries.get(delivery_id)
    if delivery is None or delivery.state == DeliveryState.DELIVERED:
        return False
    died_at = ctx.deliveries.raise_from_dead(delivery_id, delivery.tenant_id)
    if died_at and delivery.state == DeliveryState.DEAD:  # counted by its next outcome
        ctx.usage.uncount_dead(delivery.tenant_id, delivery.kind, died_at)
    ctx.deliveries.update(
        delivery_id, state=DeliveryState.PENDING, attempts=0, last_error="", next_attempt_at=""
    )
    enqueue(ctx, delivery_id)
    return True


# -- an attempt and its outcome --------------------------------------------------------------------
# app.work.delivering makes the attempt (the destination's I/O); what happens to the delivery is decided
# here: begun, delivered, retried after a backoff (a throttle's gives its attempt back), or dead.


def begin(
    ctx: Needs, delivery_id: str, target: tuple[str, str] | None = None
) -> tuple[DeliveryRecord | None, str | None, bool]:
    """Count an attempt, unless the delivery is settled or every attempt so far ended with its worker
    (DeliveryStore.begin): the record as it was, its stored target, and whether the attempt started."""
    return ctx.deliveries.begin(delivery_id, ctx.config.delivery_max_attempts, target)


def delivered(
    ctx: Needs,
    record: DeliveryRecord,
    outcome: Outcome,
    with_delivered: Callable[[Any], None] | None,
) -> None:
    """Record the success (accepted, if the destination will deliver it later unseen); ``with_delivered(pipe)``
    queues more writes to make in the same round trip."""
    pipe, delivery_id = ctx.primary.pipeline(), record.delivery_id
    ctx.deliveries.update(
        delivery_id,
        pipe=pipe,
        state=DeliveryState.ACCEPTED if outcome.accepted else DeliveryState.DELIVERED,
        location=outcome.location,
        external_id=outcome.external_id,
        delivered_at=time.time(),
        last_error="",
        next_attempt_at="",
    )
    ctx.deliveries.settled(pipe, delivery_id)
    _count(ctx, pipe, record, "delivered")
    if with_delivered is not None:
        with_delivered(pipe)
    pipe.execute()


def failed(ctx: Needs, record: DeliveryRecord, attempts: int, error: DeliveryError) -> str:
    """A retry after a backoff (never sooner than the destination's Retry-After) while attempts are left and
    the error allows one; else the dead letters. Returns the outcome."""
    delivery_id = record.delivery_id
    if isinstance(error, Gone) and record.hook_id:
        ctx.hooks.delete(record.tenant_id, record.hook_id)  # the subscriber asked us to stop
    if _held_back(ctx, record, error):
        wait = max(1.0, error.retry_after or 0.0)
        return _retry(ctx, record, attempts - 1, error, wait, held_back=True)
    if isinstance(error, Retryable) and attempts < ctx.config.delivery_max_attempts:
        wait = _backoff(ctx, attempts, error.retry_after)
        return _retry(ctx, record, attempts, error, wait, held_back=False)
    pipe, now = ctx.primary.pipeline(), time.time()
    ctx.deliveries.update(
        delivery_id,
        pipe=pipe,
        state=DeliveryState.DEAD,
        last_error=error.message,
        next_attempt_at="",
    )
    ctx.deliveries.settled(pipe, delivery_id, dead_at=now, tenant_id=record.tenant_id)
    _count(ctx, pipe, record, "dead")
    pipe.execute()
    log.warning("delivery %s is dead after %d attempt(s): %s", delivery_id, attempts, error.message)
    return "dead"


def _held_back(ctx: Needs, record: DeliveryRecord, error: DeliveryError) -> bool:
    """A throttle within the delivery's first hours: its attempt is given back (a batch into a platform's
    per-minute quota waits its turn instead of dying of 429s)."""
    young = time.time() - record.created_at < ctx.config.delivery_throttle_seconds
    return isinstance(error, Throttled) and young


def _retry(
    ctx: Needs,
    record: DeliveryRecord,
    attempts: int,
    error: DeliveryError,
    delay: float,
    held_back: bool,
) -> str:
    """Try again in ``delay`` seconds, ``attempts`` counted so far (one given back if ``held_back``)."""
    ctx.deliveries.update(
        record.delivery_id,
        state=DeliveryState.RETRYING,
        attempts=attempts,
        last_error=error.message,
        next_attempt_at=time.time() + delay,
    )
    if not held_back:
        enqueue(ctx, record.delivery_id, delay)
        return "retrying"
    # the attempt was given back, so its count does not tell this job from the one that ran into the throttle
    enqueue(ctx, record.delivery_id, delay, tag=f"throttled-{int(time.time() * 1000)}")
    return "throttled"


def _count(ctx: Needs, pipe, record: DeliveryRecord, outcome: str) -> None:
    """The outcome in the day's usage row: the dashboard's delivery success rate per kind."""
    ctx.usage.count_delivery(
        pipe,
        record.tenant_id,
        record.kind,
        outcome,
        time.time(),
        int(ctx.config.usage_retention_seconds),
    )


def _backoff(ctx: Needs, attempts: int, retry_after: float | None) -> float:
    config = ctx.config
    ceiling = min(
        config.delivery_backoff_cap_seconds, config.delivery_backoff_seconds * 2 ** (attempts - 1)
    )
    # an SDK's own wait (Dropbox's backoff) did not come through the header parser: held to its ceiling too
    wait = min(retry_after or 0.0, RETRY_AFTER_CEILING)
    return max(random.uniform(ceiling / 2, ceiling), wait)
