"""A batch row's end, from its task's follow-ups (app.domain.tracking): the row takes the task's outcome
and gives its place in the tenant's feed to the next row; the batch completes when every row has ended,
and is announced. Apart from app.domain.batches, which submits, so that tracking can call it."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from app.core.ids import new_id
from app.core.states import ROW_ENDED, TASK_ENDED, BatchStatus, RowState, TaskStatus
from app.domain import deliveries, links
from app.stores.batches import Batch, BatchStore
from app.stores.events import iso
from app.stores.tasks import Task


class Needs(deliveries.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    batches: BatchStore


log = logging.getLogger(__name__)


def row_ended(ctx: Needs, task: Task) -> None:
    """A batch row's task ended: the row takes its outcome, its place goes to the next row."""
    batch = ctx.batches.get(task.batch_id) if task.batch_id else None
    if batch is None:
        return
    state = {
        TaskStatus.COMPLETED: RowState.COMPLETED,
        TaskStatus.CANCELLED: RowState.CANCELLED,
    }.get(task.status, RowState.FAILED)
    error = task.error if isinstance(task.error, dict) else {}
    before = ctx.batches.move(
        batch,
        task.batch_row,
        state,
        frees_place=True,
        credits=task.credits_used or 0.0,
        error=error.get("message") or ("" if state == RowState.COMPLETED else task.status),
    )
    if before is None:
        return
    if (
        state == RowState.FAILED
        and batch.settings.get("on_error") == "stop"
        and batch.status == BatchStatus.RUNNING
    ):
        # no row is claimed from here on
        ctx.batches.set(batch.batch_id, status=BatchStatus.STOPPED)
        ctx.queues.batch_cancel(batch.batch_id)  # the API calls, off the webhook's path
    complete_if_done(ctx, batch.batch_id)
    # the place is the tenant's: any of its batches
    for waiting in ctx.batches.running(batch.tenant_id):
        ctx.queues.batch_feed(waiting)


POOL_WAIT_SECONDS = 1.0
"""The contract: most tasks go from queued to running within a second. A batch row that waited longer in
the API's queue (phase ``acquiring_pool``) met a full pool: more rows at once would only wait longer."""


def pool_wait(
    ctx: Needs, task: Task, upstream: dict, by_webhook: bool, now: float | None = None
) -> None:
    """The pool-saturation signal, from what the relay learns anyway (no extra call): a batch row still in
    ``acquiring_pool`` past POOL_WAIT_SECONDS, or one whose end came (by webhook, so on time) later after its
    hand-over than its own run took. Either takes one row off the tenant's feed, at most once a second.
    ``now``: a test's clock."""
    if not task.batch_id or not task.submitted_at:
        return
    now = time.time() if now is None else now
    since = now - task.submitted_at
    if upstream.get("status") in TASK_ENDED:
        waited = since - float(upstream.get("duration_ms") or 0) / 1000 if by_webhook else 0.0
    else:
        waited = (
            since
            if upstream.get("phase") == "acquiring_pool" or upstream.get("status") == "queued"
            else 0.0
        )
    if waited > POOL_WAIT_SECONDS:
        ctx.batches.pool_waited(
            task.tenant_id, minimum=1.0, every_seconds=POOL_WAIT_SECONDS, now=now
        )


def complete_if_done(ctx: Needs, batch_id: str) -> bool:
    batch = ctx.batches.get(batch_id)
    if batch is None or sum(batch.counts[s] for s in RowState if s not in ROW_ENDED) > 0:
        return False
    if batch.status == BatchStatus.RUNNING:
        ctx.batches.set(batch_id, status=BatchStatus.COMPLETED, ended_at=time.time())
    ctx.batches.ended(batch_id, batch.tenant_id)
    # once, whoever sees it end
    if ctx.batches.announce_once(batch_id):
        _announce(ctx, ctx.batches.get(batch_id) or batch)
    return True


def _announce(ctx: Needs, batch: Batch) -> None:
    """batch.completed to the batch's callback and the hooks subscribed to it: the counts and the manifest."""
    token = {"b": batch.batch_id, "l": int(ctx.config.record_link_ttl_seconds)}
    data = {
        **view(batch),
        "manifest_url": links.files_url(ctx, token),
        "zip_url": links.files_url(ctx, {**token, "z": 1}),
    }
    data["summary"] = _summary(data)
    event = {
        "id": new_id("evt"),
        "type": "batch.completed",
        "created_at": iso(time.time()),
        "data": data,
    }
    owner = deliveries.Owner(batch.batch_id, batch.tenant_id)
    ids = deliveries.plan_event(
        ctx,
        owner,
        event,
        batch.settings.get("destinations") or [],
        batch.settings.get("callback_url") or "",
        again=batch.retries,
    )
    # a retried batch's earlier announcements stay listed
    ctx.batches.set(batch.batch_id, delivery_ids=[*batch.delivery_ids, *ids])


def _summary(data: dict) -> str:
    """The batch's end in one sentence, for the messages its destinations get (Slack, Teams, email)."""
    counts = data["counts"]
    others = ", ".join(
        f"{counts[state]} {state}" for state in ("failed", "cancelled", "skipped") if counts[state]
    )
    return (
        f"Batch {data['batch_id']} {data['status']}: {counts['completed']} of {data['total']} documents made"
        f"{f' ({others})' if others else ''}, {data['credits_used']:g} credits. The manifest lists every row; "
        f"all the files in one ZIP: {data['zip_url']}"
    )


def view(batch: Batch) -> dict[str, Any]:
    total = batch.total
    ended = sum(batch.counts[state] for state in ROW_ENDED)
    elapsed = max(0.0, (batch.ended_at or time.time()) - batch.created_at)
    left = None if not ended or ended == total else round(elapsed / ended * (total - ended))
    return {
        "batch_id": batch.batch_id,
        "status": batch.status,
        "total": total,
        "counts": dict(batch.counts),
        "percent_done": round(100.0 * ended / total, 1) if total else 100.0,
        "seconds_left": left,
        "credits_used": batch.credits_used,
        "format": batch.settings.get("format"),
        "on_error": batch.settings.get("on_error"),
        "created_at": batch.created_at,
    }
