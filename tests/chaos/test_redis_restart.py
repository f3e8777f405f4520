"""Redis (AOF, appendfsync everysec) restarted in the middle of a stream of signed webhooks: every
webhook the relay acknowledged is stored and processed afterwards. The sender retries what was not
acknowledged, as the API does."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rq import Worker
from rq.job import Job
from standardwebhooks import Webhook

from app.cli.embedded_redis import EmbeddedRedis
from app.core.ids import digest
from app.work.intake import webhook_job_id
from tests.support.keys import redis_key
from tests.support.servers import eventually

WEBHOOKS, SENDERS, RESTART_AFTER = 1200, 4, 400


def _event(n: int) -> dict:
    task = {
        "task_id": f"task_{n:026d}",
        "run_id": f"run_{n:026d}",
        "status": "completed",
        "phase": None,
        "turn_index": 1,
        "progress": 100,
        "created_at": "2026-11-22T10:00:00Z",
        "updated_at": "2026-11-22T10:01:00Z",
        "result": {"download_url": "https://files.example/x", "summary": "done"},
        "error": None,
        "credits_used": 1,
        "duration_ms": 1000,
    }
    return {
        "type": "task.completed",
        "id": f"evt_{n:09d}",
        "created_at": "2026-11-22T10:01:00Z",
        "data": task,
    }


def still_in_the_intake_stream(ctx) -> set[str]:
    """The webhook-ids whose intake-stream entries are still there: an entry goes only once its webhook is
    applied (by a worker's intake lane, or by the RQ job a failed application was handed to)."""
    return {
        fields["webhook"] for _, fields in ctx.redis.xrange(ctx.intake.key) if fields.get("webhook")
    }


def rq_jobs_of(relay, webhook_ids: list[str]) -> list:
    """The RQ status and last error of webhooks handed to RQ, for a failure's message (the first 10)."""
    found = []
    for webhook_id in webhook_ids[:10]:
        job_id = webhook_job_id(relay.tenant_id, webhook_id)
        if relay.ctx.rq_redis.exists(Job.key_for(job_id)):
            job = Job.fetch(job_id, connection=relay.ctx.rq_redis)
            found.append((webhook_id, job.get_status(), (job.exc_info or "")[-300:]))
    return found


def test_acknowledged_webhooks_survive_a_redis_restart(make_relay, reliability):
    redis = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="relay-chaos-")), appendonly=True)
    redis.start()
    try:
        relay = make_relay(redis_url=redis.url, worker=False)
        worker = relay.start_worker()
        tasks = [
            relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="x").task_id
            for _ in range(20)
        ]
        signer = Webhook(relay.sandbox.webhook_secret)
        acked: set[str] = set()
        failures = {"answers": 0}
        lock = threading.Lock()

        def send(numbers: range) -> None:
            with httpx.Client(timeout=10) as client:
                for n in numbers:
                    webhook_id, body = f"msg_{n:09d}", json.dumps(_event(n))
                    url = (
                        relay.url
                        + "/webhooks/upstream/"
                        + relay.ctx.tokens.webhook(relay.tenant_id, tasks[n % len(tasks)])
                    )
                    while True:  # the API retries until it gets a 2xx
                        stamp = datetime.now(UTC)
                        headers = {
                            "webhook-id": webhook_id,
                            "webhook-timestamp": str(int(stamp.timestamp())),
                            "webhook-signature": signer.sign(webhook_id, stamp, body),
                            "content-type": "application/json",
                        }
                        try:
                            if client.post(url, content=body, headers=headers).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        with lock:
                            failures["answers"] += 1
                        time.sleep(0.05)
                    with lock:
                        acked.add(webhook_id)

        senders = [
            threading.Thread(target=send, args=(range(i, WEBHOOKS, SENDERS),))
            for i in range(SENDERS)
        ]
        for sender in senders:
            sender.start()
        eventually(
            lambda: len(acked) >= RESTART_AFTER, 600, f"{RESTART_AFTER} acknowledged webhooks"
        )
        failed_before = failures["answers"]
        redis.stop()  # SIGTERM: Redis writes its AOF and exits, as in a restart
        # down until the senders meet it: each of them has had an answer refused
        eventually(
            lambda: failures["answers"] >= failed_before + SENDERS,
            300,
            "the senders' webhooks to be refused while Redis is down",
        )
        redis.start()
        for sender in senders:
            sender.join(timeout=600)
        assert not any(s.is_alive() for s in senders) and len(acked) == WEBHOOKS, (
            f"{len(acked)} of {WEBHOOKS} webhooks acknowledged in the end; {failures['answers']} refused answers"
        )
        restarted_worker = worker.poll() is not None
        # a supervisor (compose, systemd) restarts a worker that lost its Redis
        if restarted_worker:
            worker = relay.start_worker()

        def unprocessed() -> list[str]:
            dedupe = relay.ctx.redis.pipeline(transaction=False)
            for webhook_id in sorted(acked):
                dedupe.exists(
                    redis_key(relay.ctx, "webhook", relay.tenant_id, digest(webhook_id, 40))
                )
            kept = dict(zip(sorted(acked), dedupe.execute(), strict=True))
            waiting = still_in_the_intake_stream(relay.ctx)
            return [w for w in sorted(acked) if not kept[w] or w in waiting]

        try:
            eventually(
                lambda: unprocessed() == [],
                600,
                "every acknowledged webhook to be processed",
                every=0.5,
            )
        except AssertionError:
            missing = unprocessed()
            waiting = still_in_the_intake_stream(relay.ctx)
            jobs = rq_jobs_of(relay, [w for w in missing if w in waiting])
            raise AssertionError(
                f"{len(missing)} acknowledged webhooks not processed; {len(waiting)} of them "
                f"waiting in the stream; RQ jobs {jobs}, queued "
                f"{relay.ctx.queues.get('relay-events').count}, worker alive {worker.poll() is None}, "
                f"workers {len(Worker.all(connection=relay.ctx.rq_redis))}"
            ) from None
        reliability(
            fault=f"Redis restarted (SIGTERM, AOF everysec) after {RESTART_AFTER} of {WEBHOOKS} "
            "signed webhooks, 4 concurrent senders",
            tried=1,
            lost=0,
            duplicated="0 (each webhook-id processed once)",
            notes=f"{failures['answers']} answers were errors while Redis was down and were retried by the "
            f"sender; worker {'exited and was restarted' if restarted_worker else 'reconnected'}; "
            "an entry a worker had taken when Redis went is taken up again after a reclaim period",
        )
    finally:
        redis.stop()
