"""The API's signed word about its own task is taken even when it differs from the documented example in
harmless ways (null links, a phase from a newer API, fractional credits, no progress): each is accepted and
applied exactly once. A body that is not a task event at all is still refused."""

from __future__ import annotations

import copy
import json

import httpx
import pytest

from app.work.intake import IntakeLane
from tests.relay.test_intake import TASK, signed

VARIATIONS = {
    "edit_url null": lambda data: data["result"].update(edit_url=None),
    "summary null": lambda data: data["result"].update(summary=None),
    "an unknown phase": lambda data: data.update(
        status="running", phase="proofreading_formulas", result=None, progress=40
    ),
    "fractional credits": lambda data: data.update(credits_used=12.5),
    "no progress": lambda data: data.pop("progress"),
    "no download URL, a run": lambda data: data.update(result=None),
}


def event_for(relay, change) -> tuple[str, str, bytes]:
    """A relay task and a signed-able event about it, changed by ``change``; returns (task, url, body)."""
    task = relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="p")
    data = copy.deepcopy(TASK)
    # a task id of its own per event
    data["task_id"] = "task_" + task.task_id.removeprefix("tsk_")
    change(data)
    event_type = "task.completed" if data["status"] == "completed" else "task.progress"
    body = json.dumps({"type": event_type, "id": f"evt_{task.task_id}", "data": data}).encode()
    token = relay.ctx.tokens.webhook(relay.tenant_id, task.task_id)
    return task.task_id, f"{relay.url}/webhooks/upstream/{token}", body


def test_each_harmless_variation_is_accepted_and_applied_once(make_relay):
    relay = make_relay(worker=False)
    secret = relay.sandbox.webhook_secret
    sent = {}
    for name, change in VARIATIONS.items():
        task_id, url, body = event_for(relay, change)
        for copy_ in ("first", "again"):  # the API sending it twice, with two webhook-ids
            answer = httpx.post(
                url, content=body, headers=signed(secret, body, msg_id=f"msg_{name}_{copy_}")
            )
            assert answer.status_code == 200, (name, answer.text)
        sent[name] = task_id
    IntakeLane(relay.ctx).drain()
    tasks = {name: relay.ctx.tasks.get(task_id) for name, task_id in sent.items()}
    assert (
        tasks["edit_url null"].status == "completed"
        and tasks["edit_url null"].result["edit_url"] is None
    )
    assert (
        tasks["summary null"].status == "completed"
        and tasks["summary null"].result["summary"] is None
    )
    assert (tasks["an unknown phase"].status, tasks["an unknown phase"].phase) == (
        "running",
        "proofreading_formulas",
    )
    assert tasks["no progress"].status == "completed"
    assert tasks["no download URL, a run"].status == "completed"
    view = relay.client().get(f"/v1/tasks/{sent['fractional credits']}").json()
    assert view["credits_used"] == 12.5
    usage = relay.client().get("/v1/me").json()["usage"]
    finished = len(VARIATIONS) - 1  # the running one has not ended
    assert usage["task_count"] == finished, "each applied once, though each came twice"
    assert usage["credits_used"] == 12.5 + 50 * (finished - 1)


@pytest.mark.parametrize(
    "body",
    [
        {"hello": "world"},
        [1, 2, 3],
        {"type": "task.completed", "data": {"task_id": "task_1"}},  # no status
        # no file, no run
        {
            "type": "task.completed",
            "data": {"task_id": "task_1", "status": "completed"},
        },
        {
            "type": "invoice.paid",
            "data": {"task_id": "task_1", "status": "completed", "run_id": "run_1"},
        },
        {
            "type": "task.completed",
            "data": {"task_id": "task_1", "status": "exploded", "run_id": "run_1"},
        },
    ],
)
def test_a_body_that_is_not_a_task_event_is_still_refused(make_relay, body):
    relay = make_relay(worker=False)
    _, url, _ = event_for(relay, lambda data: None)
    raw = json.dumps(body).encode()
    answer = httpx.post(url, content=raw, headers=signed(relay.sandbox.webhook_secret, raw))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_event", (
        answer.text
    )


def test_the_reconciler_reads_the_api_s_task_answers_with_the_same_tolerance(make_relay):
    """What the reconciler does with a GET /tasks/{id} answer: parse it, then apply it to the relay task."""
    from app.core.upstream import Task
    from app.domain import tracking

    relay = make_relay(worker=False)
    for name, change in VARIATIONS.items():
        task = relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="p")
        data = copy.deepcopy(TASK)
        data["task_id"] = "task_" + task.task_id.removeprefix("tsk_")
        change(data)
        answer = Task.from_json(data)
        outcome = tracking.apply(relay.ctx, task.task_id, answer.raw, source="reconciler")
        assert outcome == ("updated" if data["status"] == "running" else "finished"), name
        assert relay.ctx.tasks.get(task.task_id).status == data["status"], name


def test_progress_that_arrives_after_the_end_changes_nothing_and_is_not_watched_again(make_relay):
    """Webhooks may arrive out of order: a progress event overtaken by the task's end leaves the ended task
    as it is, and off the reconciler's watch list (it would poll the API about a task that is over)."""
    from app.domain import tracking

    relay = make_relay(worker=False)
    task = relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="p")
    ended = copy.deepcopy(TASK)
    ended["task_id"] = "task_" + task.task_id.removeprefix("tsk_")
    assert tracking.apply(relay.ctx, task.task_id, ended, source="webhook") == "finished"
    late = {**ended, "status": "running", "phase": "building", "progress": 60, "result": None}
    assert tracking.apply(relay.ctx, task.task_id, late, source="webhook") == "ended"
    assert relay.ctx.tasks.get(task.task_id).status == "completed"
    assert relay.ctx.redis.zscore(relay.ctx.tasks.watch_key, task.task_id) is None
