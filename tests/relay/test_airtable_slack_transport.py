"""Airtable's and Slack's calls go through the outbound policy's transports: behind TLS inspection (a private
certificate authority in RELAY_OUTBOUND_CA_FILE) they are delivered, and without the CA they fail as
connection trouble, not as the platform's refusal."""

from __future__ import annotations

import pytest

from app.domain import deliveries
from connectors.airtable.fake import FakeAirtable, Plan
from connectors.slack.fake import FakeSlack
from tests.support.servers import ServedApp, eventually

BASE, RECORD = "app" + "T" * 14, "rec" + "1" * 14


@pytest.fixture
def tls_airtable(loopback_ca):
    fake = FakeAirtable(back_off_seconds=1.0, plans={BASE: Plan.BUSINESS})
    fake.add_row(BASE, "Deals", RECORD, {"Status": "text"})
    served = ServedApp(fake.app(), tls=loopback_ca.server_context()).start()
    fake.url = served.url  # type: ignore[attr-defined]
    yield fake
    served.stop()


@pytest.fixture
def tls_slack(loopback_ca, tmp_path):
    fake = FakeSlack(storage=tmp_path / "slack-files")
    fake.add_channel("C0TLS")
    served = ServedApp(fake.app(), tls=loopback_ca.server_context()).start()
    fake.url = served.url
    yield fake
    served.stop()


def settle(relay, destination: dict) -> dict:
    [delivery_id] = deliveries.plan_event(
        relay.ctx,
        deliveries.Owner(task_id=f"task_tls_{destination['kind']}", tenant_id=relay.tenant_id),
        {
            "type": "task.failed",
            "data": {
                "task_id": "task_tls",
                "record_key": f"airtable:{BASE}/Deals/{RECORD}",
                "status": "failed",
                "summary": "A report could not be made.",
            },
        },
        [destination],
    )
    return eventually(
        lambda: (
            (d := relay.ctx.deliveries.get(delivery_id)) and d.state in ("delivered", "dead") and d
        ),
        60,
        "the delivery to settle",
        every=0.1,
    )


@pytest.mark.parametrize("trusted", [True, False], ids=["with-the-ca", "without"])
def test_airtable_and_slack_trust_the_outbound_ca_file(
    make_relay, loopback_ca, tls_airtable, tls_slack, trusted
):
    relay = make_relay(
        airtable_api_url=tls_airtable.url,
        slack_api_url=tls_slack.url + "/api/",
        outbound_ca_file=str(loopback_ca.ca_file) if trusted else "",
        delivery_max_attempts=1,
    )
    airtable = settle(
        relay,
        {"kind": "airtable", "config": {"token": "patTEST.token", "fields": {"status": "Status"}}},
    )
    slack = settle(
        relay, {"kind": "slack", "config": {"channel": "C0TLS", "bot_token": "xoxb-test-token"}}
    )
    if trusted:
        assert (airtable.state, slack.state) == ("delivered", "delivered"), (
            airtable.last_error,
            slack.last_error,
        )
        assert tls_airtable.rows[(BASE, "Deals", RECORD)]["Status"].startswith("Failed")
        assert [m["channel"] for m in tls_slack.messages] == ["C0TLS"]
    else:
        assert (airtable.state, slack.state) == ("dead", "dead")
        assert "could not be reached" in airtable.last_error, airtable.last_error
        assert "could not be reached" in slack.last_error, slack.last_error
