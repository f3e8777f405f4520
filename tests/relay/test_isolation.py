"""Tenant isolation: every endpoint that takes an id, called by another tenant with the owner's ids,
answers 404, and the owner's data is unchanged afterwards. Lists never show another tenant's items."""

from __future__ import annotations

from urllib.parse import quote

from app.web.openapi import ROUTES
from tests.relay.test_deliveries import delivered
from tests.support.servers import eventually


def test_another_tenants_ids_are_not_found_and_nothing_changes(relay, receiver, reliability):
    receiver.default_status = (
        400  # the owner's destination fails for good: a dead letter to poke at
    )
    owner = relay.client()
    destination = owner.post(
        "/v1/destinations", json={"name": "ops", "kind": "webhook", "config": {"url": receiver.url}}
    ).json()
    hook = owner.post(
        "/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"}
    ).json()
    task = relay.submit(
        owner,
        prompt="Owner's pipeline",
        record_key="crm:deal:1",
        destinations=[{"id": destination["id"]}],
    )
    dead = next(
        d
        for d in delivered(relay, owner, task["task_id"], count=2, timeout=120)
        if d["destination_id"]
    )
    record_path = "/v1/records/" + quote("crm:deal:1", safe="")
    batch = owner.post(
        "/v1/batches",
        json={
            "format": "word",
            "prompt_template": "Memo {{n}} [[fail]]",
            "rows": [{"record_key": "crm:deal:2", "n": 1}],
        },
    ).json()
    batch_path = f"/v1/batches/{batch['batch_id']}"
    budget_path = "/v1/budgets/records/" + quote("crm:deal:1", safe="")
    owner.put(budget_path, json={"monthly_credits": 500, "hard_cap": True}).raise_for_status()
    eventually(
        lambda: owner.get(batch_path).json()["status"] == "completed",
        60,
        "the owner's batch to end",
    )

    def owner_view() -> dict:
        paths = {
            "task": f"/v1/tasks/{task['task_id']}",
            "record": record_path,
            "hooks": "/v1/hooks",
            "destination": f"/v1/destinations/{destination['id']}",
            "events": "/v1/events",
            "me": "/v1/me",
            "delivery": f"/v1/deliveries/{dead['delivery_id']}",
            "batch": batch_path,
            "batch rows": f"{batch_path}/rows",
            "budget": budget_path,
            "tasks": "/v1/tasks",
            "records": "/v1/records",
            "budgets": "/v1/budgets",
            "audit": "/v1/audit",
        }
        return {name: _without_links(owner.get(path).json()) for name, path in paths.items()}

    before = owner_view()
    assert before["delivery"]["state"] == "dead"
    _, other_key = relay.new_tenant("intruder")
    intruder = relay.client(other_key)
    calls = {
        ("GET", "/v1/tasks/{task_id}"): intruder.get(f"/v1/tasks/{task['task_id']}"),
        ("GET", "/v1/records/{record_key}"): intruder.get(record_path),
        ("DELETE", "/v1/records/{record_key}"): intruder.delete(record_path),
        ("GET", "/v1/destinations/{destination_id}"): intruder.get(
            f"/v1/destinations/{destination['id']}"
        ),
        ("PATCH", "/v1/destinations/{destination_id}"): intruder.patch(
            f"/v1/destinations/{destination['id']}", json={"name": "mine now"}
        ),
        ("DELETE", "/v1/destinations/{destination_id}"): intruder.delete(
            f"/v1/destinations/{destination['id']}"
        ),
        ("POST", "/v1/destinations/{destination_id}/check"): intruder.post(
            f"/v1/destinations/{destination['id']}/check"
        ),
        ("DELETE", "/v1/hooks/{hook_id}"): intruder.delete(f"/v1/hooks/{hook['id']}"),
        ("GET", "/v1/deliveries/{delivery_id}"): intruder.get(
            f"/v1/deliveries/{dead['delivery_id']}"
        ),
        ("POST", "/v1/deliveries/{delivery_id}/replay"): intruder.post(
            f"/v1/deliveries/{dead['delivery_id']}/replay"
        ),
        ("POST", "/v1/exports (task_id)"): intruder.post(
            "/v1/exports", json={"task_id": task["task_id"], "format": "csv"}
        ),
        ("POST", "/v1/exports (record_key)"): intruder.post(
            "/v1/exports", json={"record_key": "crm:deal:1", "format": "csv"}
        ),
        ("POST", "/v1/documents (saved destination)"): intruder.post(
            "/v1/documents",
            json={"format": "excel", "prompt": "x", "destinations": [{"id": destination["id"]}]},
        ),
        ("GET", "/v1/batches/{batch_id}"): intruder.get(batch_path),
        ("GET", "/v1/batches/{batch_id}/rows"): intruder.get(f"{batch_path}/rows"),
        ("POST", "/v1/batches/{batch_id}/retry"): intruder.post(f"{batch_path}/retry"),
        ("POST", "/v1/batches/{batch_id}/cancel"): intruder.post(f"{batch_path}/cancel"),
        ("GET", "/v1/batches/{batch_id}/manifest.csv"): intruder.get(f"{batch_path}/manifest.csv"),
        ("GET", "/v1/batches/{batch_id}/files.zip"): intruder.get(f"{batch_path}/files.zip"),
        ("POST", "/v1/tasks/{task_id}/cancel"): intruder.post(
            f"/v1/tasks/{task['task_id']}/cancel"
        ),
        ("GET", "/v1/budgets/records/{record_key}"): intruder.get(budget_path),
        ("DELETE", "/v1/budgets/records/{record_key}"): intruder.delete(budget_path),
    }
    assert {call: answer.status_code for call, answer in calls.items()} == {
        call: 404 for call in calls
    }
    assert all(answer.json()["error"]["code"].endswith("not_found") for answer in calls.values())

    lists = {
        path: intruder.get(path).json()["items"]
        for path in (
            "/v1/events",
            "/v1/hooks",
            "/v1/destinations",
            "/v1/deliveries",
            "/v1/tasks",
            "/v1/records",
            "/v1/budgets",
        )
    }
    assert lists == {path: [] for path in lists}
    assert intruder.post("/v1/destinations/checks").json()["destinations"] == [], "its own alone"
    # a record key names the tenant's own
    own_budget = intruder.put(budget_path, json={"monthly_credits": 1})
    calls[("PUT", "/v1/budgets/records/{record_key}")] = own_budget
    assert own_budget.status_code == 200 and own_budget.json()["spent"] == 0
    assert intruder.get("/v1/me").json()["usage"]["task_count"] == 0

    own = relay.submit(intruder, prompt="Same key, other tenant", record_key="crm:deal:1")
    finished = relay.wait_task(intruder, own["task_id"])
    assert finished["run_id"] != before["task"]["run_id"]  # record keys are per tenant
    assert owner_view() == before, "the owner's data changed"
    # the intruder's log holds its own attempts alone (refused, on the owner's ids); the owner's, none of them
    attempts = intruder.get("/v1/audit", params={"limit": 200}).json()["items"]
    assert attempts and {(e["tenant"], e["actor_tenant"]) for e in attempts} == {
        (intruder.get("/v1/me").json()["tenant_id"],) * 2
    }
    assert {e["result"] for e in attempts if e["target_id"] == destination["id"]} == {
        "destination_not_found"
    }
    assert [e["action"] for e in before["audit"]["items"]][-3:] == [
        "budget.set",
        "hook.subscribed",
        "destination.created",
    ]

    with_ids = {(r.method, r.path) for r in ROUTES if r.auth and "{" in r.path}
    assert with_ids <= {call for call in calls if "{" in call[1]}, (
        "an endpoint with ids is not covered here"
    )
    reliability(
        fault="another tenant's ids on every endpoint that takes one, and its lists",
        tried=len(calls) + 4,
        lost=0,
        duplicated="-",
        notes="404 each time; the owner's task, record, destination, hooks, "
        "dead letter, events and usage unchanged",
    )


def _without_links(value):
    """File links are signed with the time they are made: leave them out of before/after comparisons."""
    if isinstance(value, dict):
        return {
            k: _without_links(v) for k, v in value.items() if k not in ("file_url", "export_url")
        }
    if isinstance(value, list):
        return [_without_links(v) for v in value]
    return value
