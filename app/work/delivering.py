"""One attempt at one delivery, in a worker (the lane's threads, or an RQ job for a retry).

It first asks the destination whether an earlier attempt already got through (Drive: appProperties; folder:
the file; others: the recorded outcome), streams the file from the API otherwise, and records the outcome.
A retryable error schedules the next attempt with exponential backoff and jitter (never sooner than
Retry-After); permanent errors and exhausted attempts land in the dead letters (app.domain.deliveries).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from redis.exceptions import RedisError

from app.core import metrics, storage
from app.core.logs import log_context
from app.core.states import DELIVERY_SETTLED, TASK_ENDED, TaskStatus
from app.core.upstream import CHUNK, TLS, UpstreamError, UpstreamUnavailable
from app.domain import batch_files, connector_env, write_back
from app.domain.deliveries import (
    begin,
    delivered,
    failed,
    target_of,
)
from app.domain.links import file_link
from app.stores.deliveries import DeliveryRecord
from app.stores.destinations import Hook, SavedDestination
from app.stores.tasks import Task
from connectors import registry
from connectors.base import (
    Delivery,
    Document,
    Environment,
    Permanent,
    Retryable,
)


class Needs(batch_files.Needs, connector_env.Needs, write_back.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""


log = logging.getLogger(__name__)


def attempt(
    ctx: Needs,
    delivery_id: str,
    with_delivered: Callable[[Any], None] | None = None,
    lane_entry: dict | None = None,
) -> str:
    """One attempt, logged with its delivery, task and tenant, and counted per kind and outcome.
    ``with_delivered(pipe)`` queues more writes to make with the record of a success (the delivery lane
    lets its entry go in the same round trip); ``lane_entry``, the entry's fields, names the target, so it
    is read with the record."""
    entry = lane_entry or {}
    hint = target_of(ctx, entry.get("tenant_id"), entry.get("destination_id"), entry.get("hook_id"))
    record, target, started = begin(ctx, delivery_id, hint)
    if record is None or record.state in DELIVERY_SETTLED:
        return record.state if record else "unknown"
    with log_context(delivery_id=delivery_id, task_id=record.task_id, tenant=record.tenant_id):
        started_at = time.perf_counter()
        target = _target(ctx, record, hint, target) if started else None
        outcome = _attempt(ctx, record, started, target, with_delivered)
        elapsed = time.perf_counter() - started_at
        log.info("delivery attempt %s: %s in %.0f ms", record.kind, outcome, elapsed * 1000)
    metrics.DELIVERY_SECONDS.labels(record.kind).observe(elapsed)
    metrics.DELIVERY_ATTEMPTS.labels(record.kind, outcome).inc()
    return outcome


def _target(
    ctx: Needs, record: DeliveryRecord, hint: tuple[str, str] | None, read: str | None
) -> str | None:
    """The saved destination or hook the delivery goes to: as begin() read it where the lane entry said, or
    read now (an RQ retry, whose job names only the delivery)."""
    needed = target_of(ctx, record.tenant_id, record.destination_id, record.hook_id)
    if needed == hint:
        return read
    return ctx.deliveries.target(needed) if needed else None


def _attempt(
    ctx: Needs, record: DeliveryRecord, started: bool, target: str | None, with_delivered
) -> str:
    """Deliver, once begin() has counted the attempt; ``target``: the saved destination or hook, if any."""
    delivery_id, attempts = record.delivery_id, record.attempts + 1
    # every attempt so far ended with its worker (killed, out of memory): stop there
    if not started:
        return failed(
            ctx,
            record,
            attempts - 1,
            Permanent(f"the worker stopped during each of {attempts - 1} attempts"),
        )
    kind = registry.KINDS.get(record.kind)
    try:
        if kind is None:
            raise Permanent(
                f"the destination no longer exists or its kind {record.kind!r} is unknown"
            )
        delivery = _delivery(ctx, record, target)
        env = _environment(ctx, delivery_id)
        writes_back = record.kind in registry.RECORD_KINDS
        outcome = (write_back.gate(ctx, record) if writes_back else None) or kind.find_existing(
            delivery, env
        )
        if outcome is None:
            document = _document_for(ctx, delivery, record) if kind.needs_document else None
            outcome = kind.deliver(delivery, document, env)
    except (Permanent, Retryable) as exc:
        return failed(ctx, record, attempts, exc)
    except UpstreamUnavailable as exc:
        return failed(
            ctx,
            record,
            attempts,
            Retryable(f"the API is unavailable: {exc.message}", exc.retry_after),
        )
    except UpstreamError as exc:
        return failed(ctx, record, attempts, Permanent(f"the API refused the file: {exc.message}"))
    except (httpx.TransportError, OSError) as exc:
        return failed(
            # its name only: a protocol error's text can quote what the other end sent
            ctx,
            record,
            attempts,
            Retryable(f"connection trouble: {type(exc).__name__}"),
        )
    except RedisError:
        raise  # the outcome cannot be recorded: the attempt is made again (lane or RQ lease)
    # a bug, not the destination: backoff and, in the end, the dead letters
    except Exception as exc:
        log.exception("delivery %s failed unexpectedly", delivery_id)
        return failed(
            ctx, record, attempts, Retryable(f"unexpected error in the relay: {type(exc).__name__}")
        )
    # delivered: a refused write now must not make the next attempt deliver it again, so it waits for Redis
    storage.persist(lambda: delivered(ctx, record, outcome, with_delivered), "delivery")
    return "delivered"


def _delivery(ctx: Needs, record: DeliveryRecord, target: str | None) -> Delivery:
    """The delivery's config: its own, or its saved destination's or hook's (``target``), decrypted."""
    if record.destination_id:
        if target is None:
            raise Permanent(f"saved destination {record.destination_id} was deleted")
        config = ctx.destinations.config(SavedDestination.from_json(target), reveal=True)
    elif record.hook_id:
        if target is None:
            raise Permanent("the hook subscription was removed")
        hook = Hook.from_json(target)
        config = {"url": hook.target_url, "secret": ctx.hooks.secret(hook)}
    else:
        config = json.loads(ctx.box.open(record.config))
    return Delivery(
        record.delivery_id, record.kind, config, record.event, record.progress, record.tenant_id
    )


def _environment(ctx: Needs, delivery_id: str) -> Environment:
    """What the relay lends a connector for this delivery: its progress is saved on the delivery."""

    def save_state(did: str, state: dict) -> None:
        ctx.deliveries.update(did, progress=state)

    return connector_env.environment(ctx, save_state)


# -- the file --------------------------------------------------------------------------------------


def _document_for(ctx: Needs, delivery: Delivery, record: DeliveryRecord) -> Document | None:
    """What the event gives a destination that takes a file: a finished task's document, a batch's manifest."""
    if delivery.event.get("type") == "batch.completed":
        return batch_files.manifest_document(ctx, delivery.event["data"])
    if delivery.event.get("type") != "task.completed":
        return None
    # its link must outlive the record that shows it
    writes_back = record.kind in registry.RECORD_KINDS
    return _document(ctx, record, ctx.config.record_link_ttl_seconds if writes_back else None)


def _document(ctx: Needs, record: DeliveryRecord, link_life: int | None = None) -> Document:
    task = ctx.tasks.get(record.task_id)
    tenant = ctx.tenants.get(record.tenant_id)
    if task is None or tenant is None:
        raise Permanent("the task has no finished document")
    # a task.completed event for a task stored as running: its end went
    if task.status not in TASK_ENDED:
        # with a failed-over Redis primary, and comes again with the reconciler's poll
        raise Retryable(
            "the task's end is not stored yet (a Redis failover lost it); it is polled again"
        )
    if task.status != TaskStatus.COMPLETED:
        raise Permanent("the task has no finished document")
    export = record.export or ""
    source = _Source(ctx, tenant, task, export)
    name = _file_name(task, export)
    return Document(
        name=name,
        content_type=source.content_type,
        size=source.size,
        open=source.open,
        link=file_link(ctx, task.task_id, export, link_life),
    )


def _file_name(task: Task, export: str) -> str:
    artifacts = (task.result or {}).get("artifacts") or []
    stem, _, ext = (artifacts[0]["file_name"] if artifacts else "document.bin").rpartition(".")
    record = task.record_key or ""
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in record)[:60] or "relay"
    version = task.task_id[-6:].lower()  # each task's file is its own version of the document
    return f"{label}-{stem}-{version}.{export or ext}"


# per worker process: tenant id -> the origins its API hands out download URLs on (learnt from the API)
_storage_origins: dict[str, set[str]] = {}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class _Source:
    """Streams the document (or an export of it) from its signed download URL, refreshing the URL through the
    API when it has expired, and resuming from an offset with an HTTP Range request.

    The event's URL names the task's own version of the document (the run's latest may be a later turn), but
    whoever can sign an event could name any address in it: it is used only when it is on the tenant's API
    host or a storage host the API itself named (learnt from GET /runs/{id}/download), else the API's fresh
    location is. No download follows a redirect."""

    def __init__(self, ctx: Needs, tenant, task: Task, export: str):
        self._ctx, self._tenant, self._task, self._export = ctx, tenant, task, export
        download = (task.result or {}).get("download_url")  # an event may come without one
        self._url = self._vouched(download) if download and not export else self._fresh_url()
        head = self._head()
        self.size = (
            int(head.headers["content-length"]) if "content-length" in head.headers else None
        )
        self.content_type = head.headers.get("content-type", "application/octet-stream").split(";")[
            0
        ]

    def _vouched(self, url: str) -> str:
        """The event's URL if the API vouches for its host, else a fresh one from the API."""
        known = _storage_origins.setdefault(self._tenant.tenant_id, set())
        if _origin(url) in known or _origin(url) == _origin(self._tenant.upstream_url):
            return url
        fresh = self._fresh_url()
        known.add(_origin(fresh))
        if _origin(url) in known:
            return url
        log.warning("an event's download URL is not on the API's hosts: the API's location is used")
        return fresh

    def _fresh_url(self) -> str:
        if not self._task.run_id:
            raise Permanent("the task has no run to download its document from")
        with self._ctx.upstream(self._tenant) as client:
            if self._export:
                return client.export(self._task.run_id, self._export).download_url
            return client.download_location(self._task.run_id)

    def _head(self) -> httpx.Response:
        response = httpx.head(self._url, timeout=30, verify=TLS)
        if response.status_code in (403, 404, 410):  # the signed link expired: ask for a new one
            self._url = self._fresh_url()
            response = httpx.head(self._url, timeout=30, verify=TLS)
        if response.status_code >= 300:
            raise Retryable(f"the document could not be fetched ({response.status_code})")
        return response

    @contextmanager
    def open(self, offset: int = 0) -> Iterator[Iterator[bytes]]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with httpx.stream("GET", self._url, headers=headers, timeout=60, verify=TLS) as response:
            if response.status_code >= 300:
                raise Retryable(f"the document could not be fetched ({response.status_code})")
            if offset and response.status_code != 206:
                raise Retryable("the document server ignored the Range request")
            yield response.iter_bytes(CHUNK)
