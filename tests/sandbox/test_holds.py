"""`[[hold=NAME]]`: a task waits mid-run until its hold is released, so a test can look at it running for as
long as it needs, whatever the machine's speed."""

from __future__ import annotations

import httpx


def submit(sandbox, client: httpx.Client, prompt: str) -> dict:
    answer = client.post("/excel/generate", json={"prompt": prompt, "async": True})
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_a_held_task_waits_running_until_released(sandbox):
    with sandbox.client() as client:
        first = submit(sandbox, client, "Quarterly [[hold=q3]]")
        second = submit(sandbox, client, "Quarterly again [[hold=q3]]")
        held = sandbox.wait_held("q3", count=2)
        assert held == sorted([first["task_id"], second["task_id"]])
        view = client.get(f"/tasks/{first['task_id']}").json()
        assert (view["status"], view["phase"]) == ("running", "executing_plan") and 0 < view[
            "progress"
        ] < 100
        sandbox.release("q3")
        ended = [sandbox.wait_task(client, t["task_id"]) for t in (first, second)]
    assert [t["status"] for t in ended] == ["completed", "completed"]
    assert sandbox.held("q3") == []


def test_a_release_before_the_task_gets_there_counts(sandbox):
    sandbox.release("early")
    with sandbox.client() as client:
        task = submit(sandbox, client, "Memo [[hold=early]]")
        assert sandbox.wait_task(client, task["task_id"])["status"] == "completed"


def test_a_held_task_can_be_cancelled(sandbox):
    with sandbox.client() as client:
        task = submit(sandbox, client, "Memo [[hold=never]]")
        sandbox.wait_held("never")
        client.post(f"/tasks/{task['task_id']}/cancel").raise_for_status()
        assert sandbox.wait_task(client, task["task_id"])["status"] == "cancelled"
    assert sandbox.held("never") == []


def test_a_hold_name_is_checked(sandbox):
    with sandbox.admin() as admin:
        answer = admin.get("/_sandbox/holds/" + "x" * 65)
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "name"
