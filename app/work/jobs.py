"""RQ job functions: top-level, importable, taking ids and plain JSON only."""

from __future__ import annotations

import json
import logging

from rq import get_current_job

from app.core.logs import log_context
from app.domain import batches, reconciler, retention, submit, tracking
from app.domain.slack import background as slack_background
from app.stores import context
from app.work import delivering

log = logging.getLogger(__name__)


def apply_webhook(
    ctx: context.Context,
    tenant_id: str,
    task_id: str,
    body: str,
    with_done: tracking.Done | None = None,
) -> str:
    """Apply a verified webhook from the API to its task (idempotent: a copy changes nothing);
    ``with_done``: see tracking.apply."""
    event = json.loads(body)
    with log_context(
        tenant=tenant_id, task_id=task_id, run_id=(event.get("data") or {}).get("run_id")
    ):
        source = f"webhook {event['type']}"
        return tracking.apply(ctx, task_id, event["data"], source=source, with_done=with_done)


def process_upstream_event(tenant_id: str, task_id: str, body: str, entry_id: str = "") -> str:
    """A webhook the intake lane (app.work.intake) could not apply, retried by RQ; then its intake-stream
    entry goes."""
    ctx = context.current()
    outcome = apply_webhook(ctx, tenant_id, task_id, body)
    ctx.intake.acknowledge(entry_id)
    return outcome


def slack_command(name: str, request: dict, entry_id: str = "") -> None:
    """The background half of an /overten command (app.domain.slack.background), then its intake-stream
    entry goes."""
    ctx = context.current()
    getattr(slack_background, name)(ctx, request)
    ctx.intake.acknowledge(entry_id)


def slack_progress(task_id: str) -> None:
    """A progress update for an /overten command's task, through its response_url; it schedules the next."""
    slack_background.watch_progress(context.current(), task_id)


def deliver(delivery_id: str) -> str:
    """One attempt at one delivery (the next one is scheduled by the attempt itself)."""
    return delivering.attempt(context.current(), delivery_id)


def feed_batch(batch_id: str) -> int:
    """Hand a batch's next rows to the API (app.domain.batches)."""
    return batches.feed(context.current(), batch_id)


def cancel_batch(batch_id: str) -> int:
    """What has not ended of a batch stopped at its first failed row."""
    ctx = context.current()
    batch = ctx.batches.get(batch_id)
    return batches.cancel(ctx, batch, reason=batch.status) if batch else 0


def submit_pending(task_id: str) -> str:
    """Hand a stored submission to the API; raising makes RQ retry it on the configured schedule."""
    job = get_current_job()
    return submit.hand_over_stored(
        context.current(), task_id, last_try=job is None or not job.retries_left
    )


def reconcile() -> dict:
    """Poll the API for tasks that have been quiet too long, so a lost webhook still finishes them; queue
    again deliveries whose job RQ lost."""
    return _alone("reconcile", 120, reconciler.run)


def sweep() -> dict:
    """The retention sweep (app/domain/retention.py)."""
    return _alone("retention", 300, retention.sweep)


def _alone(name: str, seconds: int, work) -> dict:
    """Run a periodic job unless another run of it still holds its lock (two schedulers, a slow run)."""
    ctx = context.current()
    lock = f"{ctx.config.key_prefix}{name}:lock"
    if not ctx.redis.set(lock, "1", nx=True, ex=seconds):
        return {"skipped": f"another {name} job is running"}
    try:
        return work(ctx)
    finally:
        ctx.redis.delete(lock)
