"""Signed task events: Standard Webhooks signatures, retries after failures, 410, fault knobs."""

from __future__ import annotations

import dataclasses
import json

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

import schemas
from tests.support.servers import eventually


def submit(sandbox, receiver, prompt: str = "Sales report") -> dict:
    with sandbox.client() as client:
        return client.post(
            "/excel/generate", json={"prompt": prompt, "async": True, "webhook_url": receiver.url}
        ).json()


def verified(sandbox, request) -> dict:
    return Webhook(sandbox.webhook_secret).verify(request.body, request.headers)


def test_completed_event_is_signed_and_carries_the_task(sandbox, receiver):
    accepted = submit(sandbox, receiver)
    [request] = receiver.wait_for(1)
    event = verified(sandbox, request)
    schemas.validate("upstream/task-event.json", event)
    assert event["type"] == "task.completed"
    assert request.headers["Webhook-Id"] == event["id"]
    assert (
        event["data"]["task_id"] == accepted["task_id"] and event["data"]["result"]["download_url"]
    )
    with sandbox.client() as client:
        assert event["data"] == client.get(f"/tasks/{accepted['task_id']}").json()


def test_a_wrong_secret_or_tampered_body_does_not_verify(sandbox, receiver):
    submit(sandbox, receiver)
    [request] = receiver.wait_for(1)
    other = sandbox.new_org()["webhook_secret"]
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        verified(sandbox, dataclasses.replace(request, body=request.body + b" "))


def test_event_is_retried_on_the_schedule_after_the_receiver_answers_500(make_sandbox, receiver):
    # far beyond real time: only advance() gets there
    sandbox = make_sandbox(webhook_retry_schedule=(600, 3600))
    receiver.script = [500, 503]
    submit(sandbox, receiver)
    for attempts, pause in ((1, 600), (2, 3600)):
        [delivery] = eventually(
            lambda n=attempts: [d for d in sandbox.deliveries() if d["attempts"] == str(n)],
            60,
            f"attempt {attempts} to be recorded",
            show=sandbox.deliveries,
        )
        assert delivery["status"] == "pending"
        assert delivery["due_at"] == pytest.approx(
            float(delivery["last_attempt_at"]) + pause, abs=1e-3
        )
        assert len(receiver.requests) == attempts, "the next attempt waits for its time"
        sandbox.advance(pause)
    [delivery] = sandbox.wait_settled()
    assert (delivery["status"], delivery["attempts"]) == ("delivered", "3")
    assert len(receiver.requests) == 3, "no more attempts after a 2xx"
    assert len({r.headers["Webhook-Id"] for r in receiver.requests}) == 1, (
        "every retry carries the same webhook-id"
    )
    events = [verified(sandbox, r) for r in receiver.requests]  # each attempt is signed afresh
    assert all(e["type"] == "task.completed" for e in events)


def test_410_stops_retrying(sandbox, receiver):
    receiver.script = [410]
    submit(sandbox, receiver)
    [delivery] = sandbox.wait_settled()
    assert (delivery["status"], delivery["attempts"], delivery["due_at"]) == ("gone", "1", None)
    assert len(receiver.requests) == 1


def test_retries_stop_when_the_schedule_is_exhausted(make_sandbox, receiver):
    # in real time: the dispatcher runs on its own
    sandbox = make_sandbox(webhook_retry_schedule=(0.1, 0.1))
    receiver.default_status = 500
    submit(sandbox, receiver)
    [delivery] = sandbox.wait_settled()
    assert (delivery["status"], delivery["attempts"], delivery["last_outcome"]) == (
        "failed",
        "3",
        "500",
    )
    assert len(receiver.requests) == 3


@pytest.mark.parametrize(("prompt", "event_type"), [("x [[fail]]", "task.failed")])
def test_failed_task_event(sandbox, receiver, prompt, event_type):
    submit(sandbox, receiver, prompt)
    [request] = receiver.wait_for(1)
    event = verified(sandbox, request)
    assert event["type"] == event_type and event["data"]["error"]["code"] == "agent_error"


def test_cancelled_and_expired_task_events(make_sandbox, receiver):
    sandbox = make_sandbox(pool_size=1)
    busy = submit(sandbox, receiver, "Long [[hold=busy]]")
    sandbox.wait_held("busy")  # running: the one worker is taken, so the next two stay queued
    cancelled = submit(sandbox, receiver, "Queued then cancelled")
    expired = submit(sandbox, receiver, "Queued then expired")
    with sandbox.client() as client:
        client.post(f"/tasks/{cancelled['task_id']}/cancel").raise_for_status()
    sandbox.advance(25 * 3600)
    sandbox.release("busy")
    sandbox.wait_settled(3)
    types = {
        verified(sandbox, r)["data"]["task_id"]: verified(sandbox, r)["type"]
        for r in receiver.requests
    }
    assert types == {
        cancelled["task_id"]: "task.cancelled",
        expired["task_id"]: "task.expired",
        busy["task_id"]: "task.completed",
    }
    assert len(receiver.requests) == 3


def test_drop_knob_loses_first_attempts_which_are_then_retried(make_sandbox, receiver):
    sandbox = make_sandbox(webhook_drop_rate=1.0)
    submit(sandbox, receiver)
    [delivery] = sandbox.wait_settled()
    assert (delivery["status"], delivery["attempts"]) == ("delivered", "2"), (
        "the lost first attempt was retried"
    )
    [request] = receiver.requests
    assert verified(sandbox, request)["type"] == "task.completed"


def test_copies_knob_sends_each_event_several_times(make_sandbox, receiver):
    sandbox = make_sandbox(webhook_copies=3)
    submit(sandbox, receiver)
    [delivery] = sandbox.wait_settled()  # recorded once every copy was answered
    assert delivery["attempts"] == "1"
    requests = receiver.requests
    assert len(requests) == 3
    assert len({r.headers["Webhook-Id"] for r in requests}) == 1
    assert len({json.loads(r.body)["id"] for r in requests}) == 1


def test_delay_knob_holds_the_first_attempt(make_sandbox, receiver):
    # on the sandbox clock: only advance() gets there
    sandbox = make_sandbox(webhook_delay_seconds=600)
    submit(sandbox, receiver)
    [delivery] = eventually(sandbox.deliveries, 60, "the task's event to be queued")
    assert delivery["attempts"] == "0"
    assert delivery["due_at"] == pytest.approx(float(delivery["enqueued_at"]) + 600, abs=1e-3)
    assert receiver.arrived == 0
    sandbox.advance(600)
    [request] = receiver.wait_for(1)
    assert verified(sandbox, request)["type"] == "task.completed"
