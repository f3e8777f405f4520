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

import json
import os
import socket

from rq import Retry
from rq.exceptions import DuplicateJobError

from .context import Context
from .ids import digest
from .streams import ReaderThread, ensure_group, let_go

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


def acknowledge(ctx: Context, entry_id: str) -> None:
    """The entry's work is done (called by the job itself): it leaves the stream."""
    if entry_id:
        let_go(ctx.redis, stream_key(ctx), GROUP, entry_id)


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
        self._reader = ReaderThread("relay-intake-pump", lambda: self.pump_once(block_ms=500))

    def ensure_group(self) -> None:
        ensure_group(self._ctx.redis, self._stream, GROUP)

    def pump_once(self, block_ms: int | None = None, count: int = 200) -> int:
        """Turn what is waiting into RQ jobs, and look again at entries whose job has not acknowledged
        them for a while (a dead consumer's, or a job RQ lost). Returns how many entries were handled."""
        self.ensure_group()
        _, claimed, _ = self._ctx.redis.xautoclaim(self._stream, GROUP, self._consumer, self._reclaim_idle_ms,
                                                   start_id="0-0", count=count)
        fresh = self._ctx.redis.xreadgroup(GROUP, self._consumer, {self._stream: ">"}, count=count, block=block_ms)
        entries = list(claimed) + [entry for _, batch in (fresh or []) for entry in batch]
        for entry_id, fields in entries:
            queue, job = self._job_for(entry_id, fields)
            try:
                queue.enqueue_job(job, unique=True)
            except DuplicateJobError:  # handled before: see how its job is doing
                self._recover(queue, job.id, entry_id)
        return len(entries)

    def _job_for(self, entry_id: str, fields: dict):
        """The RQ job of a stream entry; its id derives from the webhook-id (or Slack's trigger_id), and the
        job acknowledges the entry when it is done (app.jobs), so nothing is acknowledged on a promise."""
        from . import jobs, queues

        if fields.get("kind") == "slack":
            queue = self._ctx.queue(queues.SUBMIT)
            return queue, queue.create_job(jobs.slack_command, args=(fields["job"], json.loads(fields["request"]),
                                                                     entry_id),
                                           job_id="slack-" + digest(fields["dedupe"], 40), timeout=300,
                                           **queues.kept_for(self._ctx))
        queue = self._ctx.queue(queues.EVENTS)
        return queue, queue.create_job(jobs.process_upstream_event,
                                       args=(fields["tenant"], fields["task"], fields["body"], entry_id),
                                       job_id="wh-" + digest(f"{fields['tenant']}:{fields['webhook']}", 40),
                                       timeout=120, retry=_EVENT_RETRY, **queues.kept_for(self._ctx))

    def _recover(self, queue, job_id: str, entry_id: str) -> None:
        """An entry whose job exists already. Finished: the entry goes. Lost on its way to a worker: it is
        queued again. Anything else (running, scheduled for a retry, failed) RQ is handling."""
        from .queues import requeue_if_lost

        if requeue_if_lost(self._ctx, queue, job_id)[0] == b"finished":
            acknowledge(self._ctx, entry_id)

    def start(self) -> None:
        self._reader.start()

    def request_stop(self) -> None:
        self._reader.request_stop()

    def stop(self) -> None:
        self._reader.stop()
