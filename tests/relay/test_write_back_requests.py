"""What a submit that writes back is told before anything starts: record keys that do not parse, connections
that are not, a tenant's default connection per platform; and how long a link written to a record lives."""

from __future__ import annotations

import time

import httpx
import pytest

from app.domain.links import file_link

HUBSPOT = {"token": "pat-na1-test-token", "fields": {"status": "relay_status"}}


@pytest.fixture
def web(make_relay):
    return make_relay(worker=False)


def save(client, kind: str = "hubspot", config: dict | None = None, **extra) -> httpx.Response:
    return client.post(
        "/v1/destinations",
        json={"name": f"my {kind}", "kind": kind, "config": config or HUBSPOT, **extra},
    )


def refused(answer: httpx.Response, status: int, field: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["field"] == field, error
    return error["message"]


@pytest.mark.parametrize(
    ("record_key", "field", "says"),
    [
        ("hubspot:deal:forty-two", "record_key", "hubspot:{object}:{id}"),
        ("deal:42", "record_key", "hubspot:{object}:{id}"),
        (None, "record_key", "needs a record_key"),
    ],
)
def test_a_record_key_that_names_no_record_is_refused_naming_record_key(
    web, record_key, field, says
):
    with web.client() as client:
        connection = save(client).json()["id"]
        body = {
            "format": "excel",
            "prompt": "Memo",
            "write_back": {"connection": connection},
            **({"record_key": record_key} if record_key else {}),
        }
        message = refused(client.post("/v1/documents", json=body), 400, field)
        assert web.ctx.tasks.recent() == [], "nothing was stored"
    assert says in message


def test_connections_that_are_not_are_refused_naming_the_field(web):
    with web.client() as client:
        folder = save(client, "folder", {"path": "memos"}).json()["id"]
        hubspot = save(client).json()["id"]
        body = {"format": "excel", "prompt": "Memo", "record_key": "hubspot:deal:42"}
        refused(
            client.post(
                "/v1/documents", json={**body, "write_back": {"connection": "dst_" + "0" * 26}}
            ),
            404,
            "write_back.connection",
        )
        assert "folder destination" in refused(
            client.post("/v1/documents", json={**body, "write_back": {"connection": folder}}),
            400,
            "write_back.connection",
        )
        assert "write_back.connection" in refused(
            client.post("/v1/documents", json={**body, "destinations": [{"id": hubspot}]}),
            400,
            "destinations.0.id",
        )
        refused(
            client.post("/v1/documents", json={**body, "write_back": {"connection": 7}}),
            400,
            "write_back",
        )
        refused(save(client, "folder", {"path": "memos"}, default=True), 400, "default")
        assert "token, oauth" in refused(
            save(client, config={"fields": {"status": "relay_status"}}), 400, "config"
        )


def test_the_default_connection_of_a_platform_applies_unless_a_submit_says_false(web):
    with web.client() as client:
        other = save(client).json()
        default = save(client, default=True).json()
        listed = {d["id"]: d for d in client.get("/v1/destinations").json()["items"]}
        by_default = client.post(
            "/v1/documents",
            json={"format": "excel", "prompt": "Memo", "record_key": "hubspot:deal:42"},
        ).json()
        opted_out = client.post(
            "/v1/documents",
            json={
                "format": "excel",
                "prompt": "Memo",
                "write_back": False,
                "record_key": "hubspot:deal:43",
            },
        ).json()
        elsewhere = client.post(
            "/v1/documents",
            json={"format": "excel", "prompt": "Memo", "record_key": "airtable:appX/Deals/recY"},
        ).json()
        planned = client.get(f"/v1/tasks/{by_default['task_id']}").json()["deliveries"]
        assert client.delete(f"/v1/destinations/{default['id']}").status_code == 204
        after = client.post(
            "/v1/documents",
            json={"format": "excel", "prompt": "Memo", "record_key": "hubspot:deal:44"},
        ).json()
    assert listed[default["id"]]["default"] is True and listed[other["id"]]["default"] is False
    assert listed[default["id"]]["config"]["token"] == "********"
    assert web.ctx.tasks.get(by_default["task_id"]).write_back == default["id"]
    assert [(d["kind"], d["destination_id"]) for d in planned] == [("hubspot", default["id"])], (
        "its Generating write is planned"
    )
    for task in (opted_out, elsewhere, after):
        assert web.ctx.tasks.get(task["task_id"]).write_back is None, task


def test_a_link_written_to_a_record_outlives_the_links_in_messages(make_relay, monkeypatch):
    """Links are checked over HTTP on the relay's own clock, moved instead of waited for."""
    relay = make_relay(worker=False, files_link_ttl_seconds=60, record_link_ttl_seconds=3600)
    signed_at = time.time()
    message_link = file_link(relay.ctx, "tsk_" + "0" * 26)
    record_link = file_link(
        relay.ctx, "tsk_" + "0" * 26, life_seconds=relay.config.record_link_ttl_seconds
    )

    def opened_at(moment: float, link: str) -> httpx.Response:
        monkeypatch.setattr(relay.ctx.tokens, "clock", lambda: moment)
        return httpx.get(link)

    gone = opened_at(signed_at, message_link)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found", (
        "a fresh link opens"
    )
    assert opened_at(signed_at + 120, message_link).status_code == 410, (
        "past the message links' life"
    )
    answer = opened_at(signed_at + 120, record_link)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", (
        "past the message links' life, the record's link still opens (this task is gone)"
    )
    assert opened_at(signed_at + 3602, record_link).status_code == 410, (
        "and it ends with its own life"
    )


def test_relay_submit_writes_back_through_a_connection_and_says_what_is_wrong(web):
    from click.testing import CliRunner

    from app.cli.submit import submit

    with web.client() as client:
        connection = save(client).json()["id"]
    common = ["--url", web.url, "--api-key", web.api_key, "--write-back", connection]
    wrong = CliRunner().invoke(submit, ["Memo", "--record-key", "deal:42", *common])
    right = CliRunner().invoke(submit, ["Memo", "--record-key", "hubspot:deal:42", *common])
    assert (
        wrong.exit_code == 1
        and "record_key a HubSpot record key is hubspot:{object}:{id}" in wrong.output
    )
    assert right.exit_code == 0, right.output
    [task] = web.ctx.tasks.recent()
    assert task.write_back == connection
