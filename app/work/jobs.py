"""RQ job functions: top-level, importable, taking ids and plain JSON only."""

from __future__ import annotations

import json
import logging
import time

from rq import get_current_job

from app.core.logs import log_context
from app.core.states import TASK_ENDED, TaskStatus
from app.core.upstream import UpstreamNotFound, UpstreamUnavailable
from app.domain import batches, deliveries, polling, retention, submit, tracking
from app.domain.slack import background as slack_background
from app.stores import context, intake_stream, queues
from app.work import delivering

log = logging.getLogger(__name__)


def apply_webhook(ctx: context.Context, tenant_id: str, task_id: str, body: str) -> str:
    """Apply a verified webhook from the API to its task (idempotent: a copy changes nothing)."""
    event = json.loads(body)
    with log_context(
        tenant=tenant_id, task_id=task_id, run_id=(event.get("data") or {}).get("run_id")
    ):
        return tracking.apply(ctx, task_id, event["data"], source=f"webhook {event['type']}")


def process_upstream_event(tenant_id: str, task_id: str, body: str, entry_id: str = "") -> str:
    """A webhook the intake lane (app.work.intake) could not apply, retried by RQ; then its intake-stream
    entry goes."""
    ctx = context.current()
    outcome = apply_webhook(ctx, tenant_id, task_id, body)
    intake_stream.acknowledge(ctx, entry_id)
    return outcome


def slack_command(name: str, request: dict, entry_id: str = "") -> None:
    """The background half of an /overten command (app.domain.slack.background), then its intake-stream
    entry goes."""
    getattr(slack_background, name)(request)
    intake_stream.acknowledge(context.current(), entry_id)


def slack_progress(task_id: str) -> None:
    """A progress update for an /overten command's task, through its response_url; it schedules the next."""
    slack_background.watch_progress(task_id)


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
    ctx = context.current()
    task = ctx.tasks.get(task_id)
    if task is None or task.status != TaskStatus.PENDING_SUBMIT:
        return "nothing to do"
    tenant = ctx.tenants.get(task.tenant_id)
    if tenant is None:
        return "tenant gone"
    try:
        submit.hand_over(ctx, tenant, task_id)
    except UpstreamUnavailable as exc:
        job = get_current_job()
        attempts = task.submit_attempts + 1
        ctx.tasks.set(task_id, submit_attempts=attempts, last_submit_error=str(exc))
        if job is None or not job.retries_left:
            tracking.fail(
                ctx,
                task_id,
                "upstream_unavailable",
                f"The API stayed unreachable through {attempts} attempts: {exc}",
            )
            return "gave up"
        raise
    return "submitted"


def reconcile() -> dict:
    """Poll the API for tasks that have been quiet too long, so a lost webhook still finishes them; queue
    again deliveries whose job RQ lost."""
    return _alone("reconcile", 120, _reconcile)


def sweep() -> dict:
    """The retention sweep (app/domain/retention.py)."""
    return _alone("retention", 300, retention.sweep)


def _alone(name: str, seconds: int, work) -> dict:
    """Run a periodic job unless another run of it still holds its lock (two schedulers, a slow run)."""
    ctx = context.current()
    lock = ctx.key(name, "lock")
    if not ctx.redis.set(lock, "1", nx=True, ex=seconds):
        return {"skipped": f"another {name} job is running"}
    try:
        return work(ctx)
    finally:
        ctx.redis.delete(lock)


def _reconcile(ctx, now: float | None = None) -> dict:
    """One look at the tasks due and the deliveries and batch rows overdue. ``now``: a test's clock, also for
    the tenants' poll budgets (else those are on Redis's clock)."""
    counts = {"polled": 0, "finished": 0, "repaired": 0, "deferred": 0}
    for task_id in ctx.tasks.due(time.time() if now is None else now):
        counts[_reconcile_one(ctx, task_id, now)] += 1
    counts["deliveries_requeued"] = deliveries.recover_lost(ctx)
    counts["batch_rows_handed_over"] = batches.tick(ctx, now=now)
    return counts


def _reconcile_one(ctx, task_id: str, now: float | None = None) -> str:
    task = ctx.tasks.get(task_id)
    if task is not None and task.status in TASK_ENDED and task.fanout == "pending":
        # their end unwatches it: a crash leaves it for next time
        tracking.run_follow_ups(ctx, task_id, task)
        return "repaired"
    if task is None or task.status in TASK_ENDED:
        ctx.tasks.unwatch(task_id)
        return "polled"
    tenant = ctx.tenants.get(task.tenant_id)
    if tenant is None:  # it can never end otherwise, and retention only removes tasks that ended
        tracking.fail(
            ctx, task_id, "tenant_removed", "The tenant was removed before the task ended."
        )
        return "finished"
    clock = time.time() if now is None else now
    if task.status == TaskStatus.PENDING_SUBMIT:
        return _recover_submit(ctx, task_id, clock)
    if not task.upstream_task_id:
        ctx.tasks.unwatch(task_id)
        return "polled"
    wait = polling.wait_for_budget(ctx, task, now=now)
    if wait:  # the tenant's polls have spent their share of the API's rate limit for now
        ctx.tasks.watch(task_id, clock + wait)
        return "deferred"
    polls = task.polls
    try:
        with ctx.upstream(tenant) as client:
            upstream = client.get_task(task.upstream_task_id)
    except UpstreamNotFound:
        tracking.fail(ctx, task_id, "upstream_task_missing", "The API no longer knows this task.")
        return "finished"
    except UpstreamUnavailable:
        upstream = None
    ctx.tasks.set(task_id, polls=polls + 1, last_polled_at=clock)
    if (
        upstream is not None
        and tracking.apply(ctx, task_id, upstream.raw, source="reconciler", now=now) == "finished"
    ):
        return "finished"
    ctx.tasks.watch(task_id, clock + polling.next_delay(ctx, task, polls, now=clock))
    return "polled"


def _recover_submit(ctx, task_id: str, now: float) -> str:
    """A submission waiting to be handed to the API: its background job is queued again when it was lost
    (a worker popped it and died, or lost Redis's reply, before running it) or never stored (a crash between
    storing the task and queuing the job); a job that failed for good fails the task."""
    status, lost = queues.requeue_if_lost(ctx, ctx.queue(queues.SUBMIT), f"submit-{task_id}")
    if status == b"failed":
        tracking.fail(
            ctx,
            task_id,
            "submit_failed",
            "Handing the job to the API failed; see the worker's log.",
        )
        return "finished"
    if status is None or status == b"finished":  # no job, or one that ended without handing it over
        log.warning(
            "task %s was waiting for a submit job that does not exist; queued again", task_id
        )
        queues.enqueue_submit(ctx, task_id)
        return "repaired"
    ctx.tasks.watch(task_id, now + ctx.config.reconcile_quiet_seconds)
    return "repaired" if lost else "polled"
