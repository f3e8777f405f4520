"""Batches as scripts and subscribers live with them, over real HTTP: a retry that makes the batch whole
announces it again, and a hand-over the API refused with 429 is not sent again before its Retry-After,
whichever path sends it (a batch row, a submit's background retry)."""

from __future__ import annotations

import json
import time

from rq.registry import ScheduledJobRegistry

from app.domain import batches, submit
from app.stores import queues
from tests.relay.test_batches import at_a_window_start, finished, run


def test_a_retry_that_makes_the_batch_whole_announces_it_again(relay, receiver):
    with relay.client() as client:
        client.post(
            "/v1/hooks", json={"target_url": receiver.url, "event": "batch.completed"}
        ).raise_for_status()
        # the record's budget is spent by one document: its batch row fails until it is raised
        client.put(
            "/v1/budgets/records/deal%3Acapped", json={"monthly_credits": 30, "hard_cap": True}
        ).raise_for_status()
        relay.wait_task(
            client, relay.submit(client, prompt="Memo", record_key="deal:capped")["task_id"]
        )
        rows = [
            {"record_key": "deal:capped", "prompt": "Row 1"},
            {"record_key": "deal:ok", "prompt": "Row 2"},
        ]
        batch = run(
            client, {"format": "excel", "rows": rows, "callback_url": receiver.url + "/callback"}
        )
        first = receiver.wait_for(2, 60)
        client.put(
            "/v1/budgets/records/deal%3Acapped", json={"monthly_credits": 10_000, "hard_cap": True}
        ).raise_for_status()
        retried = client.post(f"/v1/batches/{batch['batch_id']}/retry")
        again = finished(client, batch["batch_id"])
        both = receiver.wait_for(4, 60)
    assert batch["counts"]["failed"] == 1 and retried.json()["retried"] == 1
    assert again["status"] == "completed" and again["counts"]["completed"] == 2
    # the hook gets the event, the callback its data
    ends = {
        (r.path, json.loads(r.body).get("data", json.loads(r.body))["counts"]["completed"])
        for r in both
    }
    assert len(first) == 2 and len(both) == 4
    assert ends == {
        ("/hook", 1),
        ("/hook/callback", 1),
        ("/hook", 2),
        ("/hook/callback", 2),
    }, "the callback and the hook learn that the batch is now whole"
    assert len(relay.ctx.batches.get(batch["batch_id"]).delivery_ids) == 4


def scheduled_at(relay, job_id: str) -> float:
    registry = ScheduledJobRegistry(queue=relay.ctx.queues.get(queues.SUBMIT))
    return registry.get_scheduled_time(job_id).timestamp()


def retry_after(relay) -> float:
    """What the API says now to the tenant's key: at most what it said to the relay a moment before."""
    with relay.sandbox.client() as api:
        answer = api.get("/runs")
    assert answer.status_code == 429, answer.text
    return float(answer.headers["Retry-After"])


def test_a_hand_over_refused_with_429_waits_for_its_retry_after(make_relay, make_sandbox):
    sandbox = make_sandbox(rate_limit_requests=1, rate_limit_window_seconds=3600)
    at_a_window_start(sandbox, 3600)
    # no worker: what the relay decided is read from its schedule, nothing runs meanwhile
    relay = make_relay(sandbox=sandbox, worker=False, upstream_retries=0)
    with relay.client() as client:
        first = relay.submit(client, prompt="Memo 1")
        before = time.time()
        refused = relay.submit(client, prompt="Memo 2")
        said = retry_after(relay)
        task = relay.ctx.tasks.get(refused["task_id"])
        at = scheduled_at(relay, f"submit-{refused['task_id']}")
        assert said > 60, "a Retry-After longer than the client waits in-line"
        assert at >= before + said, "the next hand-over is scheduled no earlier than Retry-After"
        # the background retry's own try, were it to run now: not sent, put off to the same time
        outcome = submit.hand_over_stored(relay.ctx, refused["task_id"], last_try=False)
        later = relay.ctx.tasks.get(refused["task_id"])
        rows = [{"record_key": f"deal:{n}", "prompt": f"Row {n}"} for n in (1, 2)]
        batch_id = client.post("/v1/batches", json={"format": "word", "rows": rows}).json()[
            "batch_id"
        ]
        batches.feed(relay.ctx, batch_id)
        feed = relay.ctx.batches.feed(relay.tenant_id)
    assert first["status"] != "pending_submit" and refused["status"] == "pending_submit"
    assert task.submit_not_before >= before + said, "the API's Retry-After, recorded"
    assert at >= task.submit_not_before
    assert outcome == "waiting for the API's Retry-After" and later.submit_attempts == 0, "not sent"
    assert scheduled_at(relay, later.submit_job) >= task.submit_not_before
    assert feed["hold_until"] >= before + said, "the batch's feed holds back as long"
