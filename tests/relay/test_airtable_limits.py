"""Airtable as it really is (docs/platforms.md, "Airtable"), the real relay against the strict fake: the
rates per base and per token over a batch, a workspace's spent monthly calls, attachments Airtable cannot
fetch from a private address, and single selects an editor's token cannot add options to."""

from __future__ import annotations

import pytest

from app.domain import deliveries
from connectors.airtable.fake import Plan
from tests.relay.test_write_back import connect, settled
from tests.support.servers import eventually

BASE = "app" + "B" * 14
COLUMNS = {"Status": "text", "Error": "text", "Link": "text", "Files": "attachments"}
FIELDS = {"status": "Status", "error": "Error", "link": "Link", "file": "Files"}
TOKEN = "patTEST.token"


def record(n: int) -> str:
    return f"rec{n:014d}"


def connection(fields: dict | None = None) -> dict:
    return {"token": TOKEN, "fields": fields or FIELDS}


def test_a_batch_of_write_backs_into_one_base_keeps_to_its_limits_and_none_dies(
    make_relay, fake_airtable
):
    """Three hundred write-backs into one base, by two workers: every request takes a slot of the base's
    pace and of the token's, and a 429 (a request late after its slot) waits without spending an attempt,
    so none dies. Airtable's windows and the relay's paces are scaled alike (a twentieth of a second for
    a second) so that it runs in seconds."""
    rows = 300
    fake_airtable.window_seconds = 0.05  # 5 requests a 0.05 s per base, 50 per token
    fake_airtable.back_off_seconds = 0.5
    fake_airtable.plans[BASE] = Plan.BUSINESS  # no monthly limit: the rates are the point
    for n in range(rows):
        fake_airtable.add_row(BASE, "Deals", record(n), COLUMNS)
    relay = make_relay(
        worker=False,
        airtable_api_url=fake_airtable.url,
        airtable_backoff_seconds=0.5,
        airtable_requests_per_second=100.0,
        airtable_token_requests_per_second=1000.0,
    )
    relay.start_worker()
    relay.start_worker()
    ids = [
        deliveries.plan_event(
            relay.ctx,
            deliveries.Owner(task_id=f"task_batch{n}", tenant_id=relay.tenant_id),
            {
                "type": "task.failed",
                "data": {
                    "task_id": f"task_batch{n}",
                    "record_key": f"airtable:{BASE}/Deals/{record(n)}",
                    "status": "failed",
                    "error": {"message": f"Row {n} had no prompt."},
                },
            },
            [{"kind": "airtable", "config": connection()}],
        )[0]
        for n in range(rows)
    ]

    def all_settled():
        states = relay.ctx.deliveries.states(ids)
        done = [s for s in states.values() if s in ("delivered", "dead")]
        return states if len(done) == rows else None

    states = eventually(all_settled, 180, "the batch's write-backs", every=0.5)
    dead = [relay.ctx.deliveries.get(i) for i, s in states.items() if s != "delivered"]
    assert not dead, [(d.state, d.last_error) for d in dead[:5]]
    assert {relay.ctx.deliveries.attempts(i) for i in ids} == {1}, "a wait costs no attempt"
    written = [fake_airtable.rows[(BASE, "Deals", record(n))] for n in range(rows)]
    assert all(row["Status"] == "Failed" and row["Error"].startswith("Row ") for row in written)


def test_a_free_workspace_past_its_months_calls_names_the_plan_limit(make_relay, fake_airtable):
    """A Free workspace that has spent its 1,000 calls this month is refused until the month ends (429
    PUBLIC_API_BILLING_LIMIT_EXCEEDED): the dead letter names the plan's limit and the fix at once, instead of
    "throttling, waiting 30 s" attempt after attempt."""
    fake_airtable.add_row(BASE, "Deals", record(1), COLUMNS)
    fake_airtable.calls_this_month[BASE] = Plan.FREE.monthly_calls  # the month is spent
    relay = make_relay(airtable_api_url=fake_airtable.url, airtable_backoff_seconds=1.0)
    with relay.client() as client:
        refused = client.post(
            "/v1/destinations",
            json={"name": "x", "kind": "airtable", "config": _target(connection()).config},
        ).json()["error"]
        assert refused["code"] == "destination_check_failed", refused
        assert "1,000 calls a month" in refused["message"], "the check names the plan's limit too"
        saved = connect(relay, client, _target(connection()), check=False)
        task = relay.submit(
            client,
            prompt="Renewal memo [[hold=month]]",
            record_key=f"airtable:{BASE}/Deals/{record(1)}",
            write_back={"connection": saved},
        )
        settled(client, task["task_id"], count=1)  # the start write, made while the task runs
        relay.sandbox.release("month")
        writes = settled(client, task["task_id"])
    assert [w["state"] for w in writes] == ["dead", "dead"], writes
    for write in writes:
        message = write["last_error"]
        assert "PUBLIC_API_BILLING_LIMIT_EXCEEDED" in message and "1,000 calls a month" in message
        assert "until the month ends" in message and "Upgrade" in message, message
        assert write["attempts"] == 1, "not retried: it fails the same way until the month ends"


def test_a_team_workspace_past_its_months_calls_slows_down_and_still_delivers(
    make_relay, fake_airtable
):
    """Past its 100,000 calls a Team workspace is cut to 2 requests a second per base: the 429s that brings
    are waited out without spending attempts (two attempts at most here), and every write lands."""
    fake_airtable.plans[BASE] = Plan.TEAM
    fake_airtable.calls_this_month[BASE] = Plan.TEAM.monthly_calls
    fake_airtable.window_seconds = 0.5
    for n in range(6):
        fake_airtable.add_row(BASE, "Deals", record(n), COLUMNS)
    relay = make_relay(
        airtable_api_url=fake_airtable.url,
        airtable_backoff_seconds=0.5,
        airtable_requests_per_second=10.0,  # Airtable's 5 a second, in the fake's half-second windows
        delivery_max_attempts=2,
    )
    ids = [
        deliveries.plan_event(
            relay.ctx,
            deliveries.Owner(task_id=f"task_team{n}", tenant_id=relay.tenant_id),
            {
                "type": "task.failed",
                "data": {
                    "task_id": f"task_team{n}",
                    "record_key": f"airtable:{BASE}/Deals/{record(n)}",
                    "status": "failed",
                },
            },
            [{"kind": "airtable", "config": connection()}],
        )[0]
        for n in range(6)
    ]
    states = eventually(
        lambda: (
            (s := relay.ctx.deliveries.states(ids))
            and all(v in ("delivered", "dead") for v in s.values())
            and s
        ),
        120,
        "the Team workspace's writes",
        every=0.2,
    )
    assert set(states.values()) == {"delivered"}, [
        relay.ctx.deliveries.get(i).last_error for i in ids
    ]


def test_a_file_on_a_private_public_url_is_not_attached_and_the_outcome_says_why(
    make_relay, fake_airtable
):
    """Airtable fetches an attachment from its URL, from the internet: with RELAY_PUBLIC_URL on loopback the
    file would never arrive (the fake, like Airtable, cannot reach it and drops it). The relay writes the
    other fields, attaches nothing, and the delivery says why and what to set."""
    fake_airtable.add_row(BASE, "Deals", record(2), COLUMNS)
    relay = make_relay(airtable_api_url=fake_airtable.url)
    with relay.client() as client:
        saved = connect(relay, client, _target(connection()))
        task = relay.submit(
            client,
            prompt="Renewal memo",
            record_key=f"airtable:{BASE}/Deals/{record(2)}",
            write_back={"connection": saved},
        )
        writes = settled(client, task["task_id"])
    assert [w["state"] for w in writes] == ["delivered", "delivered"], writes
    end = writes[1]["location"]
    assert "file not attached" in end and "RELAY_PUBLIC_URL" in end and "127.0.0.1" in end, end
    row = fake_airtable.rows[(BASE, "Deals", record(2))]
    assert row["Status"] == "Ready" and "/files/" in row["Link"]
    assert fake_airtable.unfetchable == [] and not row.get("Files"), "no URL Airtable cannot reach"


@pytest.mark.parametrize("creator", [False, True])
def test_a_failure_into_a_single_select_status_lands_as_failed(make_relay, fake_airtable, creator):
    """With no error field mapped the relay writes "Failed: <reason>" to the status; a single-select status
    refuses a new option from an editor's token (422 INVALID_MULTIPLE_CHOICE_OPTIONS), so the relay writes the
    recipe's plain "Failed" instead; a creator's token adds the option through typecast, as before."""
    fake_airtable.add_row(BASE, "Deals", record(3), {**COLUMNS, "Status": "singleSelect"})
    fake_airtable.options[(BASE, "Deals", "Status")] = {"Generating", "Ready", "Failed"}
    if creator:
        fake_airtable.creators.add(TOKEN)
    relay = make_relay(airtable_api_url=fake_airtable.url)
    with relay.client() as client:
        saved = connect(relay, client, _target(connection({"status": "Status", "link": "Link"})))
        task = relay.submit(
            client,
            prompt="Renewal memo [[fail]]",
            record_key=f"airtable:{BASE}/Deals/{record(3)}",
            write_back={"connection": saved},
        )
        writes = settled(client, task["task_id"])
    assert [w["state"] for w in writes] == ["delivered", "delivered"], writes
    status = fake_airtable.rows[(BASE, "Deals", record(3))]["Status"]
    assert status.startswith("Failed: ") if creator else status == "Failed", status


def _target(config: dict):
    from tests.relay.test_write_back import Platform

    return Platform("airtable", None, "", config, ("", 0))
