"""The pump from the intake stream (app.stores.intake_stream) into RQ.

A pump thread in every worker reads the stream through a consumer group and turns each event into an RQ job,
whose id derives from the webhook-id, so pumping one twice (after a crash between enqueue and
acknowledgement) is a no-op.
Entries a dead consumer had read but not acknowledged are reclaimed after RELAY_INTAKE_RECLAIM_SECONDS.
See docs/decisions/0004-intake-stream.md for why not an RQ enqueue per request.
"""

from __future__ import annotations

import json
import os
import socket

from rq import Retry
from rq.exceptions import DuplicateJobError

from app.core.ids import digest
from app.core.streams import ReaderThread, ensure_group
from app.stores import queues
from app.stores.context import Context
from app.stores.intake_stream import GROUP, acknowledge, stream_key
from app.work import jobs

_EVENT_RETRY = Retry(max=6, interval=[1, 5, 30, 120, 600, 1800])


class IntakePump:
    def __init__(self, ctx: Context, consumer: str | None = None, reclaim_idle_ms: int | None = None):
        self._ctx = ctx
        self._reclaim_idle_ms = ctx.config.intake_reclaim_seconds * 1000 if reclaim_idle_ms is None else reclaim_idle_ms
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
        job acknowledges the entry when it is done (app.work.jobs), so nothing is acknowledged on a promise."""
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
        if queues.requeue_if_lost(self._ctx, queue, job_id)[0] == b"finished":
            acknowledge(self._ctx, entry_id)

    def start(self) -> None:
        self._reader.start()

    def request_stop(self) -> None:
        self._reader.request_stop()

    def stop(self) -> None:
        self._reader.stop()
