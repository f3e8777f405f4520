"""Submitting a prompt: resolve the record's run, hand the job to the API asynchronously, remember it.

The API being down never loses a submission: the task is stored first (`pending_submit`) and a
background job keeps handing it over until the API takes it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

from redis.client import Redis

from app.core import leases, storage
from app.core.ids import new_id
from app.core.states import TASK_ENDED, TaskStatus
from app.core.upstream import RunExpired, UpstreamError, UpstreamUnavailable
from app.domain import budgets, sealing, tracking, write_back
from app.stores.records import RecordStore
from app.stores.tasks import Task
from app.stores.tenants import Tenant


class Needs(tracking.Needs, write_back.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    redis: Redis
    records: RecordStore


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmitRequest:
    """What a submit asks for, made once where it enters: POST /v1/documents's body (``from_body``), a
    batch's row with the batch's settings, an /overten command."""

    format: str
    prompt: str
    record_key: str | None = None
    resume: bool = True
    """False: a new document for the record, not the record's run of this format."""
    destinations: list[dict] = field(default_factory=list)
    export: str | None = None
    callback_url: str | None = None
    callback_headers: dict[str, str] = field(default_factory=dict)
    write_back: str | Literal[False] | None = None
    """The connection it names; False: none; None: the tenant's default for the record's platform."""

    @classmethod
    def from_body(cls, body: dict) -> SubmitRequest:
        """From a body the submit-request schema has checked (its ``wait`` is the web's own)."""
        return cls(
            format=body["format"],
            prompt=body["prompt"],
            record_key=body.get("record_key"),
            resume=body.get("resume", True),
            destinations=body.get("destinations") or [],
            export=body.get("export"),
            callback_url=body.get("callback_url"),
            callback_headers=body.get("callback_headers") or {},
            write_back=write_back_asked(body.get("write_back")),
        )


def write_back_asked(value: dict | Literal[False] | None) -> str | Literal[False] | None:
    """A body's ``write_back`` (``{"connection": id}``, false or absent) as SubmitRequest keeps it."""
    return value["connection"] if value else value


def submit(
    ctx: Needs,
    tenant: Tenant,
    request: SubmitRequest,
    task_id: str | None = None,
    batch_id: str | None = None,
    batch_row: int | None = None,
    slack_reply: str | None = None,
) -> Task:
    """Record a submission and try to hand it to the API now. Returns the relay task. The relay's own fields,
    stored with the task from the start: ``task_id`` chosen beforehand and the ``batch_id`` and ``batch_row``
    (a batch's row), ``slack_reply`` (sealed: how to answer a Slack command). Raises WriteBackRefused before
    anything is stored when the write-back it asks for cannot be made, and BudgetExceeded when a capped
    budget that applies is spent."""
    record_key = request.record_key
    budgets.check(ctx, tenant.tenant_id, record_key)
    connection = write_back.connection_for(ctx, tenant.tenant_id, request.write_back, record_key)
    mark = ctx.primary.mark()
    run_id = (
        ctx.records.run_for(tenant.tenant_id, record_key, request.format)
        if record_key and request.resume
        else None
    )

    # in the task's own transaction: a crash never splits them
    def with_record(pipe, task_id: str) -> None:
        ctx.records.touch(tenant.tenant_id, record_key, pipe=pipe)
        ctx.records.add_task(tenant.tenant_id, record_key, task_id, pipe=pipe)

    own = {"batch_id": batch_id, "batch_row": batch_row, "slack_reply": slack_reply}

    def make(task_id: str) -> Task:
        task = ctx.tasks.create(
            tenant.tenant_id,
            task_id=task_id,
            format=request.format,
            prompt=request.prompt,
            record_key=record_key,
            requested_run_id=run_id,
            # inline configs and callback headers hold secrets: sealed before they are stored
            destinations=sealing.seal_destinations(ctx.box, request.destinations),
            export=request.export,
            callback_url=request.callback_url,
            callback_headers=sealing.seal_headers(ctx.box, request.callback_headers),
            write_back=connection,
            # a crash before it is handed over leaves it to the reconciler
            watch_at=time.time() + ctx.config.reconcile_quiet_seconds,
            with_task=with_record if record_key else None,
            # a plain submit's hash has no such fields
            **{name: value for name, value in own.items() if value is not None},
        )
        return write_back.plan_start(ctx, task)

    handed = None
    try:
        if (
            task_id
        ):  # chosen beforehand (a batch row's), so known elsewhere too: read under the lease
            task = make(task_id)
            handed = hand_over(ctx, tenant, task_id)
        else:
            task_id = new_id("tsk")
            # its hand-over lease is taken before it exists: nothing else can hand it over meanwhile, so
            # the task as made here is the one to send, with no read under the lease
            with _handover_lease(ctx, task_id) as held:
                task = make(task_id)
                handed = _hand_over(ctx, tenant, task) if held else None
    except UpstreamUnavailable as exc:
        log.warning(
            "API unavailable for task %s (%s); retrying in the background", task.task_id, exc
        )
        ctx.tasks.set(task.task_id, last_submit_error=str(exc))
        ctx.queues.submit(task.task_id, not_before=_not_before(exc))
    try:
        # the answer promises the task is kept: with RELAY_REDIS_MIN_REPLICAS, on the replicas too
        ctx.primary.replicated(mark)
    except storage.NotReplicated as exc:
        kept = handed or ctx.tasks.get(task.task_id) or task  # on the primary, unconfirmed
        raise storage.DoneNotReplicated(kept, exc) from exc
    return handed or ctx.tasks.get(task.task_id) or task


def hand_over(ctx: Needs, tenant: Tenant, task_id: str) -> Task | None:
    """Send a stored submission to the API, unless another process is doing so right now (the web request
    that stored it, a background retry, one the reconciler queued again): a second POST would start a
    second job. The hand-over is a lease (app.core.leases), so one whose process was killed is free again
    after ``worker_lease_seconds``, not after the longest a generate call can take. Returns the task as it
    reads once the API took it, or None when that is not known without a read (not handed over here, or
    changed meanwhile). Raises UpstreamUnavailable when it should be tried again."""
    with _handover_lease(ctx, task_id) as held:
        if not held:
            return None
        # another process may have handed it over before this one took the lease
        task = ctx.tasks.get(task_id)
        if task is None or task.status != TaskStatus.PENDING_SUBMIT:
            return None
        # the API said when it takes it again: not before, whoever hands it over
        wait = (task.submit_not_before or 0.0) - time.time()
        if wait > 0:
            raise NotYet(
                "the API asked to wait before this is sent again (Retry-After)",
                status=429,
                retry_after=wait,
            )
        return _hand_over(ctx, tenant, task)


def _handover_lease(ctx: Needs, task_id: str):
    key = f"{ctx.config.key_prefix}handover:{task_id}"
    return leases.lease(ctx.redis, key, ctx.config.worker_lease_seconds)


def _hand_over(ctx: Needs, tenant: Tenant, task: Task) -> Task | None:
    task_id = task.task_id
    token = ctx.tokens.webhook(tenant.tenant_id, task_id)
    webhook_url = f"{ctx.config.public_url.rstrip('/')}/webhooks/upstream/{token}"
    run_id, restarted = task.requested_run_id, False
    with ctx.upstream(tenant) as client:
        try:
            try:
                submitted = client.generate(
                    task.format, task.prompt, run_id=run_id, webhook_url=webhook_url
                )
            except RunExpired:
                # the record's document is past retention: start it afresh and remap the record
                submitted = client.generate(task.format, task.prompt, webhook_url=webhook_url)
                restarted = True
        except UpstreamUnavailable as exc:
            learnt = {
                **({"throttled": client.throttled} if client.throttled else {}),
                **({"submit_not_before": _not_before(exc)} if exc.retry_after else {}),
            }
            if learnt:
                ctx.tasks.set(task_id, **learnt)
            raise
        except UpstreamError as exc:
            field = {"field": exc.field} if exc.field else {}
            tracking.fail(
                ctx, task_id, "upstream_rejected", exc.message, status=exc.status, **field
            )
            return None
    # the API has started the job: a refused write now must not lead to a second one, so it waits for Redis
    return storage.persist(
        lambda: _record_handover(ctx, tenant, task, submitted, restarted, client.throttled),
        "submit",
        patience=20,
    )


def _record_handover(
    ctx: Needs, tenant: Tenant, task: Task, submitted, restarted: bool, throttled: int
) -> Task | None:
    task_id = task.task_id
    handed = {
        "upstream_task_id": submitted.task_id,
        "run_id": submitted.run_id,
        "run_restarted": restarted,
        "submitted_at": time.time(),
        **({"throttled": throttled} if throttled else {}),
    }
    # stored again if a failover lost it (else the fields would make a task with no status, prompt or
    # tenant), with the API's ids, its status and the reconciler's watch: one round trip
    restored, status, handed_task = ctx.tasks.handed_over(
        task,
        handed,
        TaskStatus(submitted.status),
        time.time() + ctx.config.reconcile_quiet_seconds,
    )
    if restored:
        log.warning(
            "task %s was lost by a Redis failover while the API took it; stored again", task_id
        )
    if task.record_key:
        ctx.records.map_run(tenant.tenant_id, task.record_key, task.format, submitted.run_id)
    # cancelled here while the API took it: there too
    if status == TaskStatus.CANCELLED and not submitted.finished:
        try:
            with ctx.upstream.once(tenant) as client:
                client.cancel_task(submitted.task_id)
        except UpstreamError as exc:
            log.warning(
                "task %s was cancelled while handed over; cancelling it at the API failed: %s",
                task_id,
                exc,
            )
    return handed_task


def wait_for(ctx: Needs, task_id: str, seconds: float, interval: float = 0.1) -> Task:
    """Block up to ``seconds`` for the task to end (the `wait` parameter's sync facade)."""
    deadline = time.monotonic() + seconds
    while True:
        task = ctx.tasks.get(task_id)
        assert task is not None
        if task.status in TASK_ENDED or time.monotonic() >= deadline:
            return task
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def hand_over_stored(ctx: Needs, task_id: str, last_try: bool) -> str:
    """Hand a stored submission to the API (the submit job's work). An unreachable API is raised again for
    the job's next try, and fails the task on the ``last_try``."""
    task = ctx.tasks.get(task_id)
    if task is None or task.status != TaskStatus.PENDING_SUBMIT:
        return "nothing to do"
    tenant = ctx.tenants.get(task.tenant_id)
    if tenant is None:
        return "tenant gone"
    try:
        hand_over(ctx, tenant, task_id)
    except UpstreamUnavailable as exc:
        attempts = task.submit_attempts + (not isinstance(exc, NotYet))
        ctx.tasks.set(task_id, submit_attempts=attempts, last_submit_error=str(exc))
        if last_try or attempts > len(ctx.config.submit_retry_intervals):
            tracking.fail(
                ctx,
                task_id,
                "upstream_unavailable",
                f"The API stayed unreachable through {attempts} attempts: {exc}",
            )
            return "gave up"
        if exc.retry_after:
            # the API said when: the next try is then, not at RQ's next interval
            ctx.queues.submit(task_id, not_before=_not_before(exc), attempt=attempts, fresh=True)
            return "waiting for the API's Retry-After"
        raise
    return "submitted"


class NotYet(UpstreamUnavailable):
    """Not sent: the API's Retry-After for this hand-over is not over."""


def _not_before(exc: UpstreamUnavailable) -> float:
    """When the API said to send again (its Retry-After), or 0."""
    return time.time() + exc.retry_after if exc.retry_after else 0.0
