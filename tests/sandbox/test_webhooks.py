"""Signed task events: Standard Webhooks signatures, retries after failures, 410, fault knobs."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

import schemas
from tests.support.servers import eventually


def submit(sandbox, receiver, prompt: str = "Sales report") -> dict:
    with sandbox.client() as client:
        return client.post("/excel/generate", json={"prompt": prompt, "async": True,
                                                     "webhook_url": receiver.url}).json()


def verified(sandbox, request) -> dict:
    return Webhook(sandbox.webhook_secret).verify(request.body, request.headers)


def test_completed_event_is_signed_and_carries_the_task(sandbox, receiver):
    accepted = submit(sandbox, receiver)
    [request] = receiver.wait_for(1)
    event = verified(sandbox, request)
    schemas.validate("upstream/task-event.json", event)
    assert event["type"] == "task.completed"
    assert request.headers["Webhook-Id"] == event["id"]
    assert event["data"]["task_id"] == accepted["task_id"] and event["data"]["result"]["download_url"]
    with sandbox.client() as client:
        assert event["data"] == client.get(f"/tasks/{accepted['task_id']}").json()


def test_a_wrong_secret_or_tampered_body_does_not_verify(sandbox, receiver):
    submit(sandbox, receiver)
    [request] = receiver.wait_for(1)
    other = sandbox.new_org()["webhook_secret"]
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        verified(sandbox, type(request)(request.method, request.path, request.headers, request.body + b" "))


def test_event_is_retried_after_the_receiver_answers_500(sandbox, receiver):
    receiver.script = [500, 503]
    submit(sandbox, receiver)
    requests = receiver.wait_for(3)
    ids = {r.headers["Webhook-Id"] for r in requests}
    assert len(ids) == 1, "every retry carries the same webhook-id"
    events = [verified(sandbox, r) for r in requests]  # each attempt is signed afresh
    assert all(e["type"] == "task.completed" for e in events)
    time.sleep(1.0)
    assert len(receiver.requests) == 3, "no more attempts after a 2xx"
    delivery = sandbox.runtime.webhooks.deliveries()[0]
    assert (delivery["status"], delivery["attempts"]) == ("delivered", "3")


def test_410_stops_retrying(sandbox, receiver):
    receiver.script = [410]
    submit(sandbox, receiver)
    receiver.wait_for(1)
    time.sleep(1.0)  # longer than the retry schedule's first steps
    assert len(receiver.requests) == 1
    assert sandbox.runtime.webhooks.deliveries()[0]["status"] == "gone"


def test_retries_stop_when_the_schedule_is_exhausted(make_sandbox, receiver):
    sandbox = make_sandbox(webhook_retry_schedule=(0.1, 0.1))
    receiver.default_status = 500
    submit(sandbox, receiver)
    receiver.wait_for(3)
    time.sleep(0.6)
    assert len(receiver.requests) == 3
    assert sandbox.runtime.webhooks.deliveries()[0]["status"] == "failed"


@pytest.mark.parametrize(("prompt", "event_type"), [("x [[fail]]", "task.failed")])
def test_failed_task_event(sandbox, receiver, prompt, event_type):
    submit(sandbox, receiver, prompt)
    [request] = receiver.wait_for(1)
    event = verified(sandbox, request)
    assert event["type"] == event_type and event["data"]["error"]["code"] == "agent_error"


def test_cancelled_and_expired_task_events(make_sandbox, receiver):
    sandbox = make_sandbox(pool_size=1)
    busy = submit(sandbox, receiver, "Long [[duration=1.5]]")
    cancelled = submit(sandbox, receiver, "Queued then cancelled")
    expired = submit(sandbox, receiver, "Queued then expired")
    with sandbox.client() as client:
        client.post(f"/tasks/{cancelled['task_id']}/cancel")
    sandbox.advance(25 * 3600)
    requests = receiver.wait_for(3)
    types = {verified(sandbox, r)["data"]["task_id"]: verified(sandbox, r)["type"] for r in requests}
    assert types == {cancelled["task_id"]: "task.cancelled", expired["task_id"]: "task.expired",
                     busy["task_id"]: "task.completed"}


def test_drop_knob_loses_first_attempts_which_are_then_retried(make_sandbox, receiver):
    sandbox = make_sandbox(webhook_drop_rate=1.0)
    submit(sandbox, receiver)
    [request] = receiver.wait_for(1)
    # the sandbox records the attempt once the answer is in: a moment after the receiver has the request
    eventually(lambda: sandbox.runtime.webhooks.deliveries()[0]["attempts"] == "2", 10,
               "the second attempt to be recorded")
    assert verified(sandbox, request)["type"] == "task.completed"


def test_copies_knob_sends_each_event_several_times(make_sandbox, receiver):
    sandbox = make_sandbox(webhook_copies=3)
    submit(sandbox, receiver)
    requests = receiver.wait_for(3)
    assert len({r.headers["Webhook-Id"] for r in requests}) == 1
    assert len({json.loads(r.body)["id"] for r in requests}) == 1


def test_delay_knob_holds_the_first_attempt(make_sandbox, receiver):
    sandbox = make_sandbox(webhook_delay_seconds=0.8)
    accepted = submit(sandbox, receiver)
    with sandbox.client() as client:
        sandbox.wait_task(client, accepted["task_id"])
    time.sleep(0.3)
    assert receiver.requests == []
    receiver.wait_for(1)
