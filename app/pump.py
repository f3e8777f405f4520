"""The intake stream and its pump into RQ.

Webhook intake (and the Slack command acknowledgement, which has 3 seconds) must be cheap and durable:
one Lua script checks the webhook-id (kept 48 h), appends the event to a Redis stream, and only then does
the web process answer 2xx. Slack commands go the same way, deduplicated by trigger_id. A pump thread in every worker
reads the stream through a consumer group and turns each event into an RQ job, whose id derives from
the webhook-id, so pumping one twice (after a crash between enqueue and acknowledgement) is a no-op.
Entries a dead consumer had read but not acknowledged are reclaimed after ``RECLAIM_IDLE_MS``.
See docs/decisions/0004-intake-stream.md for why not an RQ enqueue per request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading

from redis.exceptions import RedisError, ResponseError
from rq import Retry
from rq.exceptions import DuplicateJobError

from .context import Context
from .ids import digest

log = logging.getLogger(__name__)

GROUP = "relay-pump"
RECLAIM_IDLE_MS = 30_000
_EVENT_RETRY = Retry(max=6, interval=[1, 5, 30, 120, 600, 1800])

# KEYS: dedupe key, stream. ARGV: ttl, tenant id, task id, webhook id, body.
_INTAKE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], '*', 'tenant', ARGV[2], 'task', ARGV[3], 'webhook', ARGV[4], 'body', ARGV[5])
return 1
"""


# KEYS: dedupe key, stream. ARGV: ttl, job name, request (JSON).
_COMMAND = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], '*', 'kind', 'slack', 'job', ARGV[2], 'request', ARGV[3], 'dedupe', KEYS[1])
return 1
"""


def stream_key(ctx: Context) -> str:
    return ctx.key("intake")


def record_event(ctx: Context, tenant_id: str, task_id: str, webhook_id: str, body: str) -> bool:
    """Durably store a verified event and queue its processing, atomically. False: seen before."""
    script = ctx.script("intake", _INTAKE)
    dedupe = ctx.key("webhook", tenant_id, digest(webhook_id, 40))
    args = [ctx.config.webhook_dedupe_ttl_seconds, tenant_id, task_id, webhook_id, body]
    return script(keys=[dedupe, stream_key(ctx)], args=args) == 1


def record_command(ctx: Context, job: str, request: dict, command_id: str) -> bool:
    """Durably queue a Slack command's work (``job`` of app.slack.jobs), once per ``command_id``."""
    dedupe = ctx.key("slack", "command", digest(command_id, 40))
    args = [86_400, job, json.dumps(request)]
    return ctx.script("slack-command", _COMMAND)(keys=[dedupe, stream_key(ctx)], args=args) == 1


class IntakePump:
    def __init__(self, ctx: Context, consumer: str | None = None, reclaim_idle_ms: int = RECLAIM_IDLE_MS):
        self._ctx = ctx
        self._reclaim_idle_ms = reclaim_idle_ms
        self._consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._stream = stream_key(ctx)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_group(self) -> None:
        try:
            self._ctx.redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def pump_once(self, block_ms: int | None = None, count: int = 200) -> int:
        """Move what is waiting (and what dead consumers left behind) into RQ. Returns how many."""
        self.ensure_group()
        _, claimed, _ = self._ctx.redis.xautoclaim(self._stream, GROUP, self._consumer, self._reclaim_idle_ms,
                                                   start_id="0-0", count=count)
        fresh = self._ctx.redis.xreadgroup(GROUP, self._consumer, {self._stream: ">"}, count=count, block=block_ms)
        entries = list(claimed) + [entry for _, batch in (fresh or []) for entry in batch]
        for entry_id, fields in entries:
            self._enqueue(fields)
            pipe = self._ctx.redis.pipeline()
            pipe.xack(self._stream, GROUP, entry_id)
            pipe.xdel(self._stream, entry_id)
            pipe.execute()
        return len(entries)

    def _enqueue(self, fields: dict) -> None:
        if fields.get("kind") == "slack":
            self._enqueue_command(fields)
            return
        from . import jobs, queues

        queue = self._ctx.queue(queues.EVENTS)
        job = queue.create_job(jobs.process_upstream_event, args=(fields["tenant"], fields["task"], fields["body"]),
                               job_id="wh-" + digest(f"{fields['tenant']}:{fields['webhook']}", 40), timeout=120,
                               result_ttl=3600, failure_ttl=7 * 86_400, retry=_EVENT_RETRY)
        with contextlib.suppress(DuplicateJobError):  # pumped before a crash kept us from acknowledging it
            queue.enqueue_job(job, unique=True)

    def _enqueue_command(self, fields: dict) -> None:
        from . import queues
        from .slack import jobs

        queue = self._ctx.queue(queues.SUBMIT)
        job = queue.create_job(getattr(jobs, fields["job"]), args=(json.loads(fields["request"]),),
                               job_id="slack-" + digest(fields["dedupe"], 40), timeout=300, result_ttl=0,
                               failure_ttl=7 * 86_400)
        with contextlib.suppress(DuplicateJobError):
            queue.enqueue_job(job, unique=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="relay-intake-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.pump_once(block_ms=1000)
            except RedisError as exc:  # Redis restarting: wait and carry on
                log.warning("intake pump: %s", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("intake pump error")
                self._stop.wait(1.0)
