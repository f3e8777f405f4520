"""Input a tenant controls that once answered 500 (issue 29, finding 9), over real HTTP: a deeply nested
JSON body is a 400, and an id that is not an id (``bat_...:rows`` names another Redis key) is a 404 on
every route that takes one, for its owner and for another tenant alike."""

from __future__ import annotations

import re

import pytest

from app.web.openapi import ROUTES

BODIES = ["/v1/documents", "/v1/batches", "/v1/destinations", "/v1/hooks"]


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 100_000 + "]" * 100_000,  # past the parser's recursion limit
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        '{"prompt": ' + "[" * 900 + "]" * 900 + "}",  # parses, but too deep for a validator
    ],
    ids=["arrays", "objects", "under-the-recursion-limit"],
)
def test_a_deeply_nested_body_is_a_400(make_relay, nested):
    relay = make_relay(worker=False)
    client = relay.client()
    answers = {
        path: client.post(path, content=nested, headers={"Content-Type": "application/json"})
        for path in BODIES
    }
    assert {path: answer.status_code for path, answer in answers.items()} == {
        path: 400 for path in BODIES
    }
    assert {answer.json()["error"]["code"] for answer in answers.values()} == {"invalid_json"}
    assert "nested" in answers[BODIES[0]].json()["error"]["message"]


def test_a_shallow_body_is_still_read(make_relay):
    relay = make_relay(worker=False)
    hook = relay.client().post(
        "/v1/hooks", json={"target_url": "https://example.com/hook", "event": "task.completed"}
    )
    assert hook.status_code == 201, hook.text


def test_an_id_that_is_not_an_id_is_not_found(make_relay):
    relay = make_relay(worker=False)
    owner = relay.client()
    batch = owner.post(
        "/v1/batches",
        json={
            "format": "word",
            "prompt_template": "Memo {{n}}",
            "rows": [{"record_key": "crm:deal:1", "n": 1}],
        },
    )
    assert batch.status_code in (200, 201, 202), batch.text
    batch_id = batch.json()["batch_id"]
    task = relay.submit(owner, prompt="A memo")
    real = {"batch_id": batch_id, "task_id": task["task_id"]}
    _, other_key = relay.new_tenant("intruder")
    intruder = relay.client(other_key)

    id_routes = [
        route
        for route in ROUTES
        if route.path.startswith("/v1/") and re.search(r"\{\w+_id\}", route.path)
    ]
    assert len(id_routes) >= 10
    answers = {}
    for route in id_routes:
        for suffix in (":rows", ":tasks", ":0"):

            def fill(match: re.Match, suffix: str = suffix) -> str:
                return real.get(match[1], "bat_01JABCDEFGHJKMNPQRSTVWXYZ0") + suffix

            path = re.sub(r"\{(\w+_id)\}", fill, route.path)
            for who, client in (("owner", owner), ("intruder", intruder)):
                answer = client.request(route.method, path, json={} if route.body else None)
                answers[(route.method, path, who)] = (
                    answer.status_code,
                    answer.headers.get("content-type"),
                )
    assert answers == {call: (404, "application/json") for call in answers}
