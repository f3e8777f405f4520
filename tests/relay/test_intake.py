"""Webhook intake: only events signed per Standard Webhooks with the tenant's secret get in; bad input
is a 4xx with nothing stored, never a 500; a redelivery is acknowledged and dropped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from standardwebhooks import Webhook

from app.stores import queues
from app.stores.consumer_group import ensure_group
from app.stores.destinations import new_webhook_secret
from app.stores.intake_stream import GROUP
from app.stores.tasks import Task
from app.work import jobs
from app.work.intake import IntakeLane
from app.work.worker import RelayWorker
from tests.support.servers import eventually

TASK = {
    "task_id": "task_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "run_id": "run_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "status": "completed",
    "phase": None,
    "turn_index": 2,
    "progress": 100,
    "created_at": "2026-11-22T10:00:00.000Z",
    "updated_at": "2026-11-22T10:01:00.000Z",
    "result": {
        "download_url": "http://x/f",
        "edit_url": "http://x/v",
        "summary": "s",
        "artifacts": [],
    },
    "error": None,
    "credits_used": 50,
    "duration_ms": 1000,
}


def signed(
    secret: str, body: bytes, msg_id: str = "evt_1", when: datetime | None = None
) -> dict[str, str]:
    when = when or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "content-type": "application/json",
    }


@pytest.fixture
def intake(make_relay):
    relay = make_relay(worker=False)  # nothing consumes the queue: we look at what was stored
    task = relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="p")
    url = f"{relay.url}/webhooks/upstream/{relay.ctx.tokens.webhook(relay.tenant_id, task.task_id)}"
    body = json.dumps(
        {
            "type": "task.completed",
            "id": "evt_1",
            "created_at": "2026-11-22T10:01:00Z",
            "data": TASK,
        }
    ).encode()
    return relay, url, body, Stored(relay)


def work(relay) -> int:
    """Run what waits in the events queue in this process, as the relay's worker would (its class: RQ's plain
    SimpleWorker's command channel blocks 60 s per read as it stops); returns how many ran."""
    queue = Queue(queues.EVENTS, connection=relay.ctx.rq_redis)
    waiting = queue.count
    RelayWorker([queue], connection=relay.ctx.rq_redis).work(burst=True)
    return waiting


def idle_for_a_lease(relay) -> None:
    """Every intake entry read and not let go looks idle for longer than any lease, as a dead or slow reader's
    does once a lease has gone by (the lane's own _release does the same): no waiting for real time."""
    stream = relay.ctx.intake.key
    for pending in relay.ctx.redis.xpending_range(stream, GROUP, "-", "+", 100):
        relay.ctx.redis.xclaim(
            stream, GROUP, pending["consumer"], 0, [pending["message_id"]], idle=2**31, justid=True
        )


def task_of(relay) -> Task:
    [task] = relay.ctx.tasks.recent(limit=1)
    return task


class Stored:
    """What intake durably stored: entries in the intake stream."""

    def __init__(self, relay):
        self.relay = relay

    @property
    def count(self) -> int:
        return self.relay.ctx.redis.xlen(self.relay.ctx.intake.key)


def test_a_signed_event_is_stored_and_applied_then_a_redelivery_is_dropped(intake):
    relay, url, body, stored = intake
    secret = relay.sandbox.webhook_secret
    first = httpx.post(url, content=body, headers=signed(secret, body))
    # same webhook-id, signed anew
    again = httpx.post(url, content=body, headers=signed(secret, body))
    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert stored.count == 1
    assert IntakeLane(relay.ctx).drain() == 1
    assert task_of(relay).status == "completed"
    assert stored.count == 0, "the lane lets its entry go once the event is applied"
    assert Queue(queues.EVENTS, connection=relay.ctx.rq_redis).count == 0, (
        "no RQ job when it went well"
    )


def test_an_event_read_by_a_consumer_that_died_is_taken_up_by_another(intake):
    relay, url, body, stored = intake
    httpx.post(
        url, content=body, headers=signed(relay.sandbox.webhook_secret, body)
    ).raise_for_status()
    ensure_group(relay.ctx.redis, relay.ctx.intake.key, GROUP)
    # read, never acked
    relay.ctx.redis.xreadgroup(GROUP, "dead", {relay.ctx.intake.key: ">"}, count=10)
    assert IntakeLane(relay.ctx, consumer="alive", lease_seconds=60).drain() == 0, (
        "not while the reader may still be alive"
    )
    idle_for_a_lease(relay)
    assert IntakeLane(relay.ctx, consumer="alive").drain() >= 1
    assert stored.count == 0 and task_of(relay).status == "completed"


def failing_once(monkeypatch):
    """The lane's application of a webhook fails (a bug, say) the first time, then works again."""
    real = jobs.apply_webhook

    def fail(*args):
        monkeypatch.setattr(jobs, "apply_webhook", real)
        raise RuntimeError("applying failed")

    monkeypatch.setattr(jobs, "apply_webhook", fail)


def test_a_webhook_whose_application_fails_is_retried_by_rq(intake, monkeypatch):
    relay, url, body, stored = intake
    httpx.post(
        url, content=body, headers=signed(relay.sandbox.webhook_secret, body)
    ).raise_for_status()
    failing_once(monkeypatch)
    assert IntakeLane(relay.ctx).drain() == 1
    [job] = Queue(queues.EVENTS, connection=relay.ctx.rq_redis).jobs
    assert job.args[2] == body.decode() and job.retries_left
    assert stored.count == 1, "the entry stays until its job has done the work"
    idle_for_a_lease(relay)
    assert IntakeLane(relay.ctx, consumer="alive").drain() >= 1
    assert Queue(queues.EVENTS, connection=relay.ctx.rq_redis).count == 1, (
        "taken up again: RQ has it, no copy"
    )
    assert work(relay) == 1
    assert task_of(relay).status == "completed" and stored.count == 0, "the job lets its entry go"


def handed_to_rq(relay, url, body, monkeypatch):
    """The webhook's job waits in the events queue, its entry in the stream."""
    httpx.post(
        url, content=body, headers=signed(relay.sandbox.webhook_secret, body)
    ).raise_for_status()
    failing_once(monkeypatch)
    IntakeLane(relay.ctx).drain()
    queue = Queue(queues.EVENTS, connection=relay.ctx.rq_redis)
    [job_id] = queue.job_ids
    return queue, job_id


def test_a_job_left_in_rqs_intermediate_queue_is_queued_again_after_a_reclaim_period(
    intake, monkeypatch
):
    """A worker's pop reached Redis but its answer never came back (a failover, a dropped connection): the
    job id sits in RQ's intermediate queue and no worker runs it. The lane's next looks at its entry mark it,
    then queue it again once it has waited there for RELAY_INTAKE_RECLAIM_SECONDS, not RQ's minute."""
    relay, url, body, stored = intake
    queue, job_id = handed_to_rq(relay, url, body, monkeypatch)
    # the pop whose answer was lost
    relay.ctx.rq_redis.lmove(queue.key, queue.intermediate_queue_key)
    idle_for_a_lease(relay)
    assert IntakeLane(relay.ctx, consumer="alive").drain() >= 1 and queue.count == 0, (
        "seen in the intermediate queue: marked, left there"
    )
    intermediate = IntermediateQueue(queue.key, relay.ctx.rq_redis)
    seen_at, reclaim = (
        intermediate.get_first_seen(job_id).timestamp(),
        relay.ctx.config.intake_reclaim_seconds,
    )
    assert relay.ctx.queues.requeue_if_lost(queue, job_id, now=seen_at + reclaim - 0.5) == (
        b"queued",
        False,
    ), "left there until a whole reclaim period has gone by"
    assert queue.count == 0 and relay.ctx.rq_redis.llen(queue.intermediate_queue_key) == 1
    # a period ago
    relay.ctx.rq_redis.set(intermediate.get_first_seen_key(job_id), seen_at - reclaim - 1)
    idle_for_a_lease(relay)
    # its next look (a new lane: no tick to wait)
    assert IntakeLane(relay.ctx, consumer="alive").drain() >= 1
    assert queue.job_ids == [job_id] and relay.ctx.rq_redis.llen(queue.intermediate_queue_key) == 0
    assert work(relay) == 1 and stored.count == 0


def test_the_same_event_twice_in_the_stream_is_applied_once(intake):
    relay, url, body, stored = intake
    httpx.post(
        url, content=body, headers=signed(relay.sandbox.webhook_secret, body)
    ).raise_for_status()
    entry = relay.ctx.redis.xrange(relay.ctx.intake.key)[0][1]
    relay.ctx.redis.xadd(relay.ctx.intake.key, entry)  # the same event twice in the stream
    assert IntakeLane(relay.ctx).drain() == 2
    assert stored.count == 0
    usage = relay.client().get("/v1/me").json()["usage"]
    assert (usage["task_count"], usage["credits_used"]) == (1, 50), "counted once"


def test_a_job_lost_between_redis_and_a_worker_is_queued_again(intake, monkeypatch):
    """A worker on several queues pops with BLPOP; if Redis restarts before the reply arrives, the job id
    has left the queue and no worker runs it. The entry's second look finds it and queues it again."""
    relay, url, body, stored = intake
    queue, _ = handed_to_rq(relay, url, body, monkeypatch)
    relay.ctx.rq_redis.lpop(queue.key)  # popped, and the reply never reached a worker
    assert queue.count == 0
    idle_for_a_lease(relay)
    assert IntakeLane(relay.ctx, consumer="alive").drain() >= 1
    assert queue.count == 1
    assert work(relay) == 1 and stored.count == 0


def test_several_signatures_during_secret_rotation(intake):
    relay, url, body, _ = intake
    headers = signed(relay.sandbox.webhook_secret, body)
    old = signed("whsec_" + "b2xkIHNlY3JldCBvbGQgc2VjcmV0IG9sZA==", body)["webhook-signature"]
    headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
    assert httpx.post(url, content=body, headers=headers).status_code == 200


def test_a_changed_webhook_secret_applies_at_once_and_the_old_one_is_refused_after_it(intake):
    relay, url, body, _ = intake
    old, new = relay.sandbox.webhook_secret, new_webhook_secret()
    # remembered
    assert httpx.post(url, content=body, headers=signed(old, body, "evt_old")).status_code == 200
    relay.ctx.tenants.update_upstream(relay.tenant_id, webhook_secret=new)
    assert httpx.post(url, content=body, headers=signed(new, body, "evt_new")).status_code == 200, (
        "a signature the remembered secret refuses is checked with the secret read again"
    )
    refused = httpx.post(url, content=body, headers=signed(old, body, "evt_old_again"))
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_signature")


def bad_headers(secret: str, body: bytes) -> dict[str, dict[str, str]]:
    good = signed(secret, body)
    return {
        "wrong secret": signed("whsec_" + "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldA==", body),
        "stale timestamp": signed(secret, body, when=datetime.now(UTC) - timedelta(minutes=6)),
        "future timestamp": signed(secret, body, when=datetime.now(UTC) + timedelta(minutes=6)),
        "missing id": {k: v for k, v in good.items() if k != "webhook-id"},
        "missing signature": {k: v for k, v in good.items() if k != "webhook-signature"},
        "missing timestamp": {k: v for k, v in good.items() if k != "webhook-timestamp"},
        "garbage signature": {**good, "webhook-signature": "garbage"},
        "no comma": {**good, "webhook-signature": "v1"},
        "not base64": {**good, "webhook-signature": "v1,!!!not-base64!!!"},
        "other version": {
            **good,
            "webhook-signature": "v2," + good["webhook-signature"].split(",")[1],
        },
        "timestamp not a number": {**good, "webhook-timestamp": "yesterday"},
    }


@pytest.mark.parametrize("case", list(bad_headers("whsec_" + "eA==", b"{}")))
def test_bad_signatures_are_401_and_store_nothing(intake, case):
    relay, url, body, stored = intake
    response = httpx.post(
        url, content=body, headers=bad_headers(relay.sandbox.webhook_secret, body)[case]
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_signature"
    assert stored.count == 0


def test_tampered_body_is_401(intake):
    relay, url, body, stored = intake
    headers = signed(relay.sandbox.webhook_secret, body)
    tampered = body.replace(b'"credits_used": 50', b'"credits_used": 5')
    assert httpx.post(url, content=tampered, headers=headers).status_code == 401
    assert stored.count == 0


@pytest.mark.parametrize("token", ["nonsense", "WyJ0ZW5fMSIsInRza18xIl0.forged-signature", ""])
def test_bad_token_is_401_or_404(intake, token):
    relay, url, body, stored = intake
    base = url.rsplit("/", 1)[0]
    response = httpx.post(
        f"{base}/{token}", content=body, headers=signed(relay.sandbox.webhook_secret, body)
    )
    assert response.status_code in ((401,) if token else (404, 405))
    assert response.headers["content-type"].startswith("application/json")
    assert stored.count == 0


def test_signed_but_not_a_task_event_is_400(intake):
    relay, url, _, stored = intake
    for body in (
        b"not json at all",
        b'{"type": "task.completed"}',
        b'{"type": "user.created", "id": "x", "created_at": "now", "data": {}}',
    ):
        response = httpx.post(url, content=body, headers=signed(relay.sandbox.webhook_secret, body))
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_event"
    assert stored.count == 0


def test_body_over_one_mebibyte_is_413(intake):
    relay, url, _, stored = intake
    body = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = httpx.post(url, content=body, headers=signed(relay.sandbox.webhook_secret, body))
    assert response.status_code == 413 and stored.count == 0


def test_a_body_over_one_mebibyte_sent_chunked_is_413_before_it_is_all_read(intake):
    relay, url, _, stored = intake
    body = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: chunked
    response = httpx.post(url, content=chunks, headers=signed(relay.sandbox.webhook_secret, body))
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert stored.count == 0


def test_the_intake_path_answers_json_for_a_wrong_method_or_path(intake):
    _, url, _, _ = intake
    wrong_method = httpx.get(url)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    too_deep = httpx.post(url + "/more", content=b"{}")
    assert too_deep.status_code == 404 and too_deep.json()["error"]["code"] == "not_found"


def test_events_signed_by_the_sandbox_are_accepted_end_to_end(make_relay):
    """The sandbox signs with the standardwebhooks package; the relay verifies with it."""
    relay = make_relay(worker=False)  # the lane is drained here: no worker process needed
    with relay.client() as client:
        task_id = relay.submit(client, prompt="Anything")["task_id"]
        eventually(
            lambda: IntakeLane(relay.ctx).drain(),
            60,
            "the API's signed webhook in the intake stream",
        )
        task = client.get(f"/v1/tasks/{task_id}").json()
    assert task["status"] == "completed"
    webhooks = relay.sandbox.runtime.webhooks
    [delivery] = eventually(
        lambda: [d for d in webhooks.deliveries() if d["status"] != "pending"],
        60,
        "the sandbox to record the relay's answer",
        show=webhooks.deliveries,
    )
    assert delivery["status"] == "delivered" and delivery["last_outcome"] == "200"
