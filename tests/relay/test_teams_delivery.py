"""The Teams destination against the fake Workflows webhook, over real HTTP: the card, Teams' 28 KB limit,
a 429 honoured, and a refused workflow URL in the dead letters without its secret."""

from __future__ import annotations

import httpx

from connectors.base import Delivery, Document
from connectors.teams import MAX_BYTES, message
from tests.relay.test_deliveries import delivered


def to_teams(relay, client, url: str, prompt: str = "Q3 pipeline") -> dict:
    return relay.submit(
        client,
        prompt=prompt,
        record_key="deal:12",
        destinations=[{"kind": "teams", "config": {"url": url, "title": "Pipeline ready"}}],
    )


def test_the_card_names_the_document_and_opens_the_file(relay, fake_teams):
    with relay.client() as client:
        task = to_teams(relay, client, fake_teams.url(fake_teams.base))
        [done] = delivered(relay, client, task["task_id"])
        finished = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert done["state"] == "delivered", done["last_error"]
    [card] = fake_teams.posted
    title, summary, facts = card["body"]
    assert title["text"] == "Pipeline ready" and summary["text"] == finished["result"]["summary"]
    assert {f["title"]: f["value"] for f in facts["facts"]}["Record"] == "deal:12"
    [open_file] = card["actions"]
    downloaded = httpx.get(open_file["url"], follow_redirects=True)
    assert downloaded.content == httpx.get(finished["result"]["download_url"]).content
    assert "sig=" not in done["location"], "the workflow URL's signature is a secret"


def test_a_long_summary_is_shortened_under_teams_28_kb():
    document = Document(
        "deal-12-workbook.xlsx",
        "application/octet-stream",
        10,
        lambda offset: None,
        link="https://relay.example/files/x",
    )
    event = {
        "type": "task.completed",
        "data": {
            "record_key": "deal:12",
            "format": "excel",
            "result": {"summary": "Rows and totals. " * 4000},
        },
    }
    body = message(Delivery("dlv_1", "teams", {"url": "https://x"}, event), document)
    assert len(body.encode()) <= MAX_BYTES and '"Rows and totals.' in body and "…" in body


def test_a_429_is_honoured(relay, fake_teams):
    fake_teams.knobs.throttle_next(1)
    with relay.client() as client:
        task = to_teams(relay, client, fake_teams.url(fake_teams.base))
        [done] = delivered(relay, client, task["task_id"], timeout=60)
    assert fake_teams.knobs.early == [], (
        "the retry waited for Retry-After: the workflow refuses calls before it"
    )
    assert (
        len(fake_teams.knobs.throttled) == 1
        and done["state"] == "delivered"
        and done["attempts"] == 2
    )
    assert len(fake_teams.posted) == 1


def test_a_refused_workflow_url_lands_in_the_dead_letters_without_its_secret(relay, fake_teams):
    with relay.client() as client:
        task = to_teams(
            relay, client, fake_teams.url(fake_teams.base, signature="revoked-signature")
        )
        [dead] = delivered(relay, client, task["task_id"])
        listed = {d["delivery_id"] for d in client.get("/v1/deliveries").json()["items"]}
    assert dead["state"] == "dead" and dead["attempts"] == 1 and dead["delivery_id"] in listed
    assert (
        "Teams workflow answered 401" in dead["last_error"]
        and "revoked-signature" not in dead["last_error"]
    )
