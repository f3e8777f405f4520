"""The intake lane: the API's webhooks and Slack commands from the intake stream (app.stores.intake_stream).

Every worker that serves the events queue reads the stream through a consumer group, a batch at a time, and
applies each webhook on its own threads, as the delivery lane runs deliveries: one RQ job per webhook cost
more of a worker's CPU than applying the webhook (docs/scaling.md). RQ still does what it is good at:
- a webhook whose application failed (a bug, a dependency down) is handed to an RQ job with retries and a
  backoff, whose id derives from the webhook-id, so handing it over twice is a no-op;
- a Slack command's background half runs as an RQ job on the submit queue (it calls the API).
An entry goes only once its work is done (by the lane, or by that job). One a worker took and did not finish
(it died, or lost Redis) is taken up by another after RELAY_INTAKE_RECLAIM_SECONDS, and one whose job exists
already is looked after: a finished job's entry goes, a lost job is queued again.
See docs/decisions/0004-intake-stream.md and 0013-intake-lane.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from redis.exceptions import RedisError

from app.core.config import RelayConfig
from app.core.ids import digest
from app.stores import queues
from app.stores.intake_stream import IntakeStream
from app.stores.queues import Queues
from app.work import jobs, lane
from app.work.lane import StreamLane


class Needs(lane.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    config: RelayConfig
    queues: Queues
    intake: IntakeStream


log = logging.getLogger(__name__)


class IntakeLane(StreamLane):
    name = "intake"

    def __init__(
        self,
        ctx: Needs,
        threads: int | None = None,
        lease_seconds: float | None = None,
        consumer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        config = ctx.config
        super().__init__(
            ctx,
            ctx.intake,
            config.intake_threads if threads is None else threads,
            config.intake_reclaim_seconds if lease_seconds is None else lease_seconds,
            consumer,
            clock,
        )

    def handle(self, entry_id: str, fields: dict, reclaimed: bool) -> bool:
        if fields.get("kind") == "slack":
            return self._hand_to_rq(*self._command_job(entry_id, fields))
        job_id = webhook_job_id(fields["tenant"], fields["webhook"])
        # handed to RQ before: RQ has it
        if reclaimed and self._ctx.queues.job_exists(job_id):
            return self._recover(self._ctx.queues.get(queues.EVENTS), job_id)
        let_go: list[bool] = []

        def with_done(pipe) -> None:  # an ending: the entry goes with the mark its follow-ups ran
            self.let_go_on(pipe, entry_id)
            let_go.append(True)

        try:
            jobs.apply_webhook(
                self._ctx, fields["tenant"], fields["task"], fields["body"], with_done
            )
        except RedisError:
            raise  # the outcome may not be recorded: taken up again after a lease
        except Exception:
            log.exception("intake: webhook %s failed; RQ retries it", fields["webhook"])
            return self._hand_to_rq(*self._ctx.queues.event_retry_job(fields, entry_id, job_id))
        return not let_go

    def _command_job(self, entry_id: str, fields: dict):
        job_id = "slack-" + digest(fields["dedupe"], 40)
        return self._ctx.queues.slack_command_job(fields, entry_id, job_id)

    def _hand_to_rq(self, queue, job) -> bool:
        """Queue the entry's job, which lets the entry go when it is done (so False: not here)."""
        if queues.hand_over(queue, job):
            return False
        return self._recover(queue, job.id)  # handed over before: see how its job is doing

    def _recover(self, queue, job_id: str) -> bool:
        """An entry whose job exists already. Finished: the entry goes. Lost on its way to a worker: it is
        queued again. Anything else (running, scheduled for a retry, failed) RQ is handling."""
        return self._ctx.queues.requeue_if_lost(queue, job_id)[0] == b"finished"


def webhook_job_id(tenant_id: str, webhook_id: str) -> str:
    """The RQ job id of a webhook handed to RQ: the same for every copy of one webhook."""
    return "wh-" + digest(f"{tenant_id}:{webhook_id}", 40)
