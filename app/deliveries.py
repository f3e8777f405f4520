"""Fan-out of finished tasks: one delivery per (task, destination), each its own RQ job.

A delivery is recorded before its job is enqueued, with an id derived from the task and the slot, so
planning twice creates nothing new. Each attempt first asks the destination whether an earlier attempt
already got through (Drive: appProperties; folder: the file; others: the recorded outcome), streams the
file otherwise, and on a retryable error schedules its next attempt through RQ's scheduler with
exponential backoff and jitter (never sooner than Retry-After). Permanent errors and exhausted attempts
land in the dead-letter list, from which `relay deliveries replay` and the API re-run them.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any

import httpx
from redis.exceptions import RedisError
from rq import Retry

from connectors import registry
from connectors.base import Delivery, DeliveryError, Document, Environment, Gone, Permanent, Retryable

from . import lane, metrics, queues, storage
from .context import Context
from .events import iso
from .ids import digest
from .logs import log_context
from .outbound import OutboundPolicy
from .tasks import to_field
from .upstream import CHUNK, TLS, UpstreamError, UpstreamUnavailable

log = logging.getLogger(__name__)

STATES = ("pending", "delivering", "retrying", "delivered", "dead")
_CRASH_RETRY = Retry(max=3, interval=[5, 30, 120])  # a worker killed mid-job: RQ runs the job again


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


def update(ctx: Context, delivery_id: str, **fields: Any) -> None:
    fields.setdefault("updated_at", time.time())
    ctx.redis.hset(key_for(ctx, delivery_id), mapping={k: to_field(v) for k, v in fields.items()})


def view(delivery: dict) -> dict:
    def when(name: str) -> str | None:
        return iso(float(delivery[name])) if delivery.get(name) else None

    return {"delivery_id": delivery["delivery_id"], "kind": delivery["kind"],
            "destination_id": delivery.get("destination_id") or None, "state": delivery["state"],
            "attempts": int(delivery.get("attempts") or 0), "last_error": delivery.get("last_error") or None,
            "location": delivery.get("location") or None, "export": delivery.get("export") or None,
            "next_attempt_at": when("next_attempt_at"), "delivered_at": when("delivered_at")}


def for_task(ctx: Context, task: dict) -> list[dict]:
    ids = json.loads(task.get("delivery_ids") or "[]")
    return [view(d) for i in ids if (d := get(ctx, i))]


def dead_letters(ctx: Context, tenant_id: str | None = None) -> list[dict]:
    ids = ctx.redis.zrevrange(dead_letter_key(ctx), 0, -1)
    return [d for i in ids if (d := get(ctx, i, tenant_id))]


# -- planning --------------------------------------------------------------------------------------

def plan(ctx: Context, task: dict, event: dict) -> None:
    """The finish hook: record and enqueue every delivery this task's ending calls for."""
    slots: list[tuple[str, dict]] = []
    if task["status"] == "completed":
        slots += [(f"destination:{n}", ref) for n, ref in enumerate(task.get("destinations") or [])]
    if task.get("callback_url"):
        slots.append(("callback", {"kind": "callback",
                                   "config": {"url": task["callback_url"],
                                              "headers": task.get("callback_headers") or {}}}))
    if task.get("slack_reply"):  # an /overten command: tell the person who ran it how it ended
        slots.append(("slack-reply", {"kind": "slack_reply", "config": json.loads(ctx.box.open(task["slack_reply"]))}))
    slots += [(f"hook:{hook['id']}", {"kind": "webhook", "hook_id": hook["id"]})
              for hook in ctx.hooks.list(task["tenant_id"], event["type"])]
    event = with_links(ctx, event)
    ids = [_record(ctx, task, event, slot, ref) for slot, ref in slots]
    if ids:
        ctx.tasks.set(task["task_id"], delivery_ids=ids)
    for delivery_id in ids:
        enqueue(ctx, delivery_id)


def _record(ctx: Context, task: dict, event: dict, slot: str, ref: dict) -> str:
    delivery_id = "dlv_" + digest(f"{task['task_id']}:{slot}", 26).upper()
    if not ctx.redis.hsetnx(key_for(ctx, delivery_id), "delivery_id", delivery_id):
        return delivery_id  # planned before (the finish hook ran again after a crash)
    record: dict[str, Any] = {"tenant_id": task["tenant_id"], "task_id": task["task_id"], "state": "pending",
                              "attempts": 0, "created_at": time.time(), "event": event, "export": ""}
    if ref.get("id"):  # a saved destination: read when delivering, so a fixed config applies on replay
        saved = ctx.destinations.get(task["tenant_id"], ref["id"])
        record.update(kind=saved["kind"] if saved else "missing", destination_id=ref["id"],
                      export=ref.get("export") or (saved or {}).get("export") or task.get("export") or "")
    elif ref.get("hook_id"):
        record.update(kind="webhook", hook_id=ref["hook_id"])
    else:
        exported = registry.KINDS[ref["kind"]].needs_document
        record.update(kind=ref["kind"], config=ctx.box.seal(json.dumps(ref.get("config") or {})),
                      export=(ref.get("export") or task.get("export") or "") if exported else "")
    update(ctx, delivery_id, **record)
    return delivery_id


def enqueue(ctx: Context, delivery_id: str, delay: float = 0.0) -> None:
    """An attempt due now goes to the delivery lane (app/lane.py); a later one is an RQ job RQ's scheduler
    releases when its backoff is over."""
    recheck_at = time.time() + delay + ctx.config.delivery_recheck_seconds
    if delay <= 0:
        lane.add(ctx, delivery_id, key_for(ctx, delivery_id), open_key(ctx), recheck_at)
        return
    from . import jobs

    attempt = int(ctx.redis.hget(key_for(ctx, delivery_id), "attempts") or 0)
    # result_ttl=0: the delivery record is the result; keeping RQ's copy only costs writes per job
    ctx.queue(queues.DELIVER).enqueue_in(timedelta(seconds=delay), jobs.deliver, delivery_id,
                                         job_id=f"deliver-{delivery_id}-{attempt}", job_timeout=3600, result_ttl=0,
                                         failure_ttl=ctx.config.job_failure_ttl_seconds, retry=_CRASH_RETRY)
    ctx.redis.zadd(open_key(ctx), {delivery_id: recheck_at})


def recover_lost(ctx: Context, limit: int = 500) -> int:
    """The reconciler's look at deliveries overdue: one whose lane entry or RQ job was lost (a crash before
    it was stored, a worker that died or lost Redis's reply before running the job) is queued again.
    Returns how many were."""
    now, recovered = time.time(), 0
    for delivery_id in ctx.redis.zrangebyscore(open_key(ctx), "-inf", now, start=0, num=limit):
        record = get(ctx, delivery_id)
        if record is None or record["state"] in ("delivered", "dead"):
            ctx.redis.zrem(open_key(ctx), delivery_id)
            continue
        ctx.redis.zadd(open_key(ctx), {delivery_id: now + ctx.config.delivery_recheck_seconds})
        if record["state"] == "delivering":
            continue  # running, or its worker died: the lane's lease (or RQ's, for a retry) brings it back
        if record["state"] == "pending":
            lost = not lane.waiting(ctx, record.get("lane_entry", ""))
            if lost:
                log.warning("delivery %s was not in the delivery lane; added again", delivery_id)
                enqueue(ctx, delivery_id)
            recovered += lost
            continue
        job_id = f"deliver-{delivery_id}-{int(record.get('attempts') or 0)}"
        status, lost = queues.requeue_if_lost(ctx, ctx.queue(queues.DELIVER), job_id)
        if status is None:  # a retry planned, but its job never made it into Redis
            enqueue(ctx, delivery_id)
        recovered += lost or status is None
    return recovered


def replay(ctx: Context, delivery_id: str) -> bool:
    """Run a dead (or stuck) delivery again from scratch. False when it is already delivered."""
    delivery = get(ctx, delivery_id)
    if delivery is None or delivery["state"] == "delivered":
        return False
    ctx.redis.zrem(dead_letter_key(ctx), delivery_id)
    update(ctx, delivery_id, state="pending", attempts=0, last_error="", next_attempt_at="")
    enqueue(ctx, delivery_id)
    return True


# -- one attempt -----------------------------------------------------------------------------------

def attempt(ctx: Context, delivery_id: str) -> str:
    """One attempt, logged with its delivery, task and tenant, and counted per kind and outcome."""
    record = get(ctx, delivery_id)
    if record is None or record["state"] in ("delivered", "dead"):
        return record["state"] if record else "unknown"
    with log_context(delivery_id=delivery_id, task_id=record["task_id"], tenant=record["tenant_id"]):
        started = time.perf_counter()
        outcome = _attempt(ctx, delivery_id, record)
        elapsed = time.perf_counter() - started
        log.info("delivery attempt %s: %s in %.0f ms", record["kind"], outcome, elapsed * 1000)
    metrics.DELIVERY_SECONDS.labels(record["kind"]).observe(elapsed)
    metrics.DELIVERY_ATTEMPTS.labels(record["kind"], outcome).inc()
    return outcome


def _attempt(ctx: Context, delivery_id: str, record: dict) -> str:
    attempts = int(record.get("attempts") or 0) + 1
    if record["state"] == "delivering" and attempts > ctx.config.delivery_max_attempts:
        # every attempt so far ended with its worker (killed, out of memory) before an outcome: stop there
        return _failed(ctx, record, attempts - 1, Permanent(f"the worker stopped during each of {attempts - 1} "
                                                            "attempts"))
    update(ctx, delivery_id, state="delivering", attempts=attempts)
    kind = registry.KINDS.get(record["kind"])
    try:
        if kind is None:
            raise Permanent(f"the destination no longer exists or its kind {record['kind']!r} is unknown")
        delivery = _delivery(ctx, record)
        env = _environment(ctx, delivery_id)
        outcome = kind.find_existing(delivery, env)
        if outcome is None:
            document = _document(ctx, record) if kind.needs_document else None
            outcome = kind.deliver(delivery, document, env)
    except (Permanent, Retryable) as exc:
        return _failed(ctx, record, attempts, exc)
    except UpstreamUnavailable as exc:
        return _failed(ctx, record, attempts, Retryable(f"the API is unavailable: {exc.message}", exc.retry_after))
    except UpstreamError as exc:
        return _failed(ctx, record, attempts, Permanent(f"the API refused the file: {exc.message}"))
    except (httpx.TransportError, OSError) as exc:
        return _failed(ctx, record, attempts, Retryable(f"connection trouble: {type(exc).__name__}: {exc}"))
    except RedisError:
        raise  # the outcome cannot be recorded: the attempt is made again (lane or RQ lease)
    except Exception as exc:  # a bug, not the destination: backoff and, in the end, the dead letters
        log.exception("delivery %s failed unexpectedly", delivery_id)
        return _failed(ctx, record, attempts, Retryable(f"unexpected error in the relay: {type(exc).__name__}"))
    # delivered: a refused write now must not make the next attempt deliver it again, so it waits for Redis
    storage.persist(lambda: _delivered(ctx, delivery_id, outcome), "delivery")
    return "delivered"


def _delivered(ctx: Context, delivery_id: str, outcome) -> None:
    update(ctx, delivery_id, state="delivered", location=outcome.location, external_id=outcome.external_id,
           delivered_at=time.time(), last_error="", next_attempt_at="")
    ctx.redis.zrem(open_key(ctx), delivery_id)


def _failed(ctx: Context, record: dict, attempts: int, error: DeliveryError) -> str:
    delivery_id = record["delivery_id"]
    if isinstance(error, Gone) and record.get("hook_id"):
        ctx.hooks.delete(record["tenant_id"], record["hook_id"])  # the subscriber asked us to stop
    if isinstance(error, Retryable) and attempts < ctx.config.delivery_max_attempts:
        delay = _backoff(ctx, attempts, error.retry_after)
        update(ctx, delivery_id, state="retrying", last_error=error.message, next_attempt_at=time.time() + delay)
        enqueue(ctx, delivery_id, delay)
        return "retrying"
    update(ctx, delivery_id, state="dead", last_error=error.message, next_attempt_at="")
    ctx.redis.zadd(dead_letter_key(ctx), {delivery_id: time.time()})
    ctx.redis.zrem(open_key(ctx), delivery_id)
    log.warning("delivery %s is dead after %d attempt(s): %s", delivery_id, attempts, error.message)
    return "dead"


def _backoff(ctx: Context, attempts: int, retry_after: float | None) -> float:
    config = ctx.config
    ceiling = min(config.delivery_backoff_cap_seconds, config.delivery_backoff_seconds * 2 ** (attempts - 1))
    return max(random.uniform(ceiling / 2, ceiling), retry_after or 0.0)


def _delivery(ctx: Context, record: dict) -> Delivery:
    tenant_id = record["tenant_id"]
    if record.get("destination_id"):
        saved = ctx.destinations.get(tenant_id, record["destination_id"], reveal=True)
        if saved is None:
            raise Permanent(f"saved destination {record['destination_id']} was deleted")
        config = saved["config"]
    elif record.get("hook_id"):
        hook = ctx.hooks.get(tenant_id, record["hook_id"], reveal=True)
        if hook is None:
            raise Permanent("the hook subscription was removed")
        config = {"url": hook["target_url"], "secret": hook["secret"]}
    else:
        config = json.loads(ctx.box.open(record["config"]))
    state = json.loads(record.get("progress") or "{}")
    return Delivery(record["delivery_id"], record["kind"], config, json.loads(record["event"]), state)


_clients: dict[tuple[str, float], httpx.Client] = {}  # per worker process: pooled connections


def _pooled_client(policy: OutboundPolicy, allow: str, timeout: float = 30.0):
    """The process's shared client for this policy and timeout; not closed after each use."""
    key = (allow, timeout)
    if key not in _clients:
        _clients[key] = policy.client(timeout=timeout)
    return nullcontext(_clients[key])


def _environment(ctx: Context, delivery_id: str) -> Environment:
    config = ctx.config
    policy = OutboundPolicy(config.outbound_allow)

    def save_state(did: str, state: dict) -> None:
        update(ctx, did, progress=state)

    def http(timeout: float = 30.0):
        return _pooled_client(policy, config.outbound_allow, timeout)

    settings = {"folder_roots": config.folder_roots, "slack_api_url": config.slack_api_url,
                "drive_api_url": config.drive_api_url, "drive_token_url": config.drive_token_url,
                "email_attach_max_bytes": config.email_attach_max_bytes, "check_url": policy.check,
                "check_host": policy.check_host}
    return Environment(http=http, save_state=save_state, settings=settings)


# -- the file --------------------------------------------------------------------------------------

def _document(ctx: Context, record: dict) -> Document:
    task = ctx.tasks.get(record["task_id"])
    tenant = ctx.tenants.get(record["tenant_id"])
    if task is None or tenant is None or task["status"] != "completed":
        raise Permanent("the task has no finished document")
    export = record.get("export") or ""
    source = _Source(ctx, tenant, task, export)
    name = _file_name(task, export)
    return Document(name=name, content_type=source.content_type, size=source.size, open=source.open,
                    link=file_link(ctx, task["task_id"], export))


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


def file_link(ctx: Context, task_id: str, export: str = "") -> str:
    token = ctx.tokens.file({"t": task_id, "x": export})
    return f"{ctx.config.public_url.rstrip('/')}/files/{token}"


def _file_name(task: dict, export: str) -> str:
    artifacts = (task.get("result") or {}).get("artifacts") or []
    stem, _, ext = (artifacts[0]["file_name"] if artifacts else "document.bin").rpartition(".")
    record = task.get("record_key") or ""
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in record)[:60] or "relay"
    version = task["task_id"][-6:].lower()  # each task's file is its own version of the document
    return f"{label}-{stem}-{version}.{export or ext}"


class _Source:
    """Streams the document (or an export of it) from the API's signed URL, refreshing the URL through
    GET /runs/{id} when it has expired, and resuming from an offset with an HTTP Range request."""

    def __init__(self, ctx: Context, tenant, task: dict, export: str):
        self._ctx, self._tenant, self._task, self._export = ctx, tenant, task, export
        download = (task.get("result") or {}).get("download_url")  # an event may come without one
        self._url = download if download and not export else self._fresh_url()
        head = self._head()
        self.size = int(head.headers["content-length"]) if "content-length" in head.headers else None
        self.content_type = head.headers.get("content-type", "application/octet-stream").split(";")[0]

    def _fresh_url(self) -> str:
        with self._ctx.upstream(self._tenant) as client:
            if self._export:
                return client.export(self._task["run_id"], self._export).download_url
            return client.download_location(self._task["run_id"])

    def _head(self) -> httpx.Response:
        response = httpx.head(self._url, timeout=30, follow_redirects=True, verify=TLS)
        if response.status_code in (403, 404, 410):  # the signed link expired: ask for a new one
            self._url = self._fresh_url()
            response = httpx.head(self._url, timeout=30, follow_redirects=True, verify=TLS)
        if response.status_code >= 400:
            raise Retryable(f"the document could not be fetched ({response.status_code})")
        return response

    @contextmanager
    def open(self, offset: int = 0) -> Iterator[Iterator[bytes]]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with httpx.stream("GET", self._url, headers=headers, timeout=60, follow_redirects=True,
                          verify=TLS) as response:
            if response.status_code >= 400:
                raise Retryable(f"the document could not be fetched ({response.status_code})")
            if offset and response.status_code != 206:
                raise Retryable("the document server ignored the Range request")
            yield response.iter_bytes(CHUNK)
