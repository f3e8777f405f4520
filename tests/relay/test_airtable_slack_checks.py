"""The checks of Airtable connections and Slack destinations (Kind.check, run through app.domain.checks as
the API runs them when a destination is saved), against the strict fakes: each says what passed, what will
bite later and what to fix, in plain words, without delivering anything."""

from __future__ import annotations

import pytest

from app.domain import checks
from connectors.airtable.fake import ALL_SCOPES, SCHEMA, Plan
from connectors.slack.fake import OLD_SCOPES

BASE = "app" + "C" * 14
COLUMNS = {"Status": "singleSelect", "Error": "text", "Link": "text", "Files": "attachments"}
FIELDS = {"status": "Status", "error": "Error", "link": "Link", "file": "Files"}
AIRTABLE_TOKEN, SLACK_TOKEN = "patTEST.token", "xoxb-test-token"


def by_name(report) -> dict:
    return {check.name: check for check in report.checks}


@pytest.fixture
def airtable_relay(make_relay, fake_airtable):
    fake_airtable.add_row(BASE, "Deals", "rec" + "1" * 14, COLUMNS)
    fake_airtable.options[(BASE, "Deals", "Status")] = {"Generating", "Ready", "Failed"}
    return make_relay(worker=False, airtable_api_url=fake_airtable.url)


def airtable_check(relay, **config):
    return checks.run(
        relay.ctx,
        relay.tenant_id,
        "airtable",
        {"token": AIRTABLE_TOKEN, "fields": FIELDS, **config},
    )


def test_an_airtable_connection_that_works_passes_but_warns_of_a_private_public_url(
    airtable_relay,
):
    """Every check passes, but RELAY_PUBLIC_URL is on loopback (a test's): Airtable could never fetch the
    file, which the check says, naming A2 and the fix."""
    report = airtable_check(airtable_relay)
    found = by_name(report)
    assert report.verdict == "warning", report.view()
    for name in ("signs in", "the fields exist", "may write to the base", "reads records"):
        assert found[name].verdict == "pass", found[name]
    fetch = found["Airtable can fetch the file"]
    assert fetch.verdict == "warning" and "A2" in fetch.message and "127.0.0.1" in fetch.message
    assert "RELAY_PUBLIC_URL" in fetch.fix
    no_file = airtable_check(
        airtable_relay, fields={k: v for k, v in FIELDS.items() if k != "file"}
    )
    assert no_file.verdict == "pass", no_file.view()


def test_an_airtable_connection_with_a_bad_token_or_missing_fields_fails_saying_what_to_fix(
    airtable_relay, fake_airtable
):
    bad = airtable_check(airtable_relay, token="patREVOKED.token")
    assert bad.failed and by_name(bad)["signs in"].verdict == "failure"
    assert "airtable.com/create/tokens" in by_name(bad)["signs in"].fix

    missing = airtable_check(airtable_relay, fields={**FIELDS, "version": "Version"})
    check = by_name(missing)["the fields exist"]
    assert missing.failed and "Version" in check.message and "Deals" in check.message

    fake_airtable.tables[(BASE, "Deals")] = {**COLUMNS, "Files": "text"}
    wrong_type = by_name(airtable_check(airtable_relay))["the file field takes attachments"]
    assert wrong_type.verdict == "failure" and "attachment" in wrong_type.fix


def test_an_airtable_token_without_read_scopes_or_a_spent_month_fails_and_a_select_warns(
    airtable_relay, fake_airtable
):
    fake_airtable.scopes[AIRTABLE_TOKEN] = set(ALL_SCOPES) - {"data.records:read"}
    no_read = by_name(airtable_check(airtable_relay))["reads records"]
    assert no_read.verdict == "failure" and "data.records:read" in no_read.fix

    fake_airtable.scopes[AIRTABLE_TOKEN] = set(ALL_SCOPES) - {SCHEMA}
    blind = by_name(airtable_check(airtable_relay))["the fields exist"]
    assert blind.verdict == "warning" and "schema.bases:read" in blind.fix

    fake_airtable.scopes.clear()
    fake_airtable.calls_this_month[BASE] = Plan.FREE.monthly_calls
    spent = by_name(airtable_check(airtable_relay))["reads records"]
    assert spent.verdict == "failure" and "1,000 calls a month" in spent.message
    assert "Upgrade" in spent.fix

    fake_airtable.calls_this_month.clear()
    fake_airtable.options[(BASE, "Deals", "Status")] = {"Done"}
    select = by_name(airtable_check(airtable_relay))["the status field takes the statuses"]
    assert select.verdict == "warning" and "Generating, Ready, Failed" in select.fix


@pytest.fixture
def slack_relay(make_relay, fake_slack):
    return make_relay(worker=False, slack_api_url=fake_slack.url + "/api/")


def slack_check(relay, channel: str, token: str = SLACK_TOKEN):
    return checks.run(relay.ctx, relay.tenant_id, "slack", {"channel": channel, "bot_token": token})


def test_a_slack_destination_passes_when_the_bot_is_in_the_channel_or_may_join_it(
    slack_relay, fake_slack
):
    fake_slack.add_channel("C0MEMBER")
    fake_slack.add_channel("C0OPEN", members=set())
    fake_slack.scopes[SLACK_TOKEN] = {*OLD_SCOPES, "channels:join", "channels:read"}
    member = slack_check(slack_relay, "C0MEMBER")
    assert member.verdict == "pass", member.view()
    assert [c.name for c in member.checks] == [
        "signs in",
        "has the scopes",
        "the bot is in the channel",
    ]
    joinable = by_name(slack_check(slack_relay, "C0OPEN"))["the bot is in the channel"]
    assert joinable.verdict == "pass" and "joins it" in joinable.message
    assert "conversations.join" not in fake_slack.calls, "a check joins nothing"
    assert fake_slack.messages == [] and fake_slack.files == {}, "a check posts nothing"


def test_a_slack_destination_the_bot_cannot_reach_fails_saying_invite_the_bot(
    slack_relay, fake_slack
):
    fake_slack.add_channel("C0OPEN", members=set())
    fake_slack.add_channel("G0SECRET", private=True, members={"U0ANN"})
    fake_slack.scopes[SLACK_TOKEN] = {*OLD_SCOPES, "channels:read"}  # no channels:join
    for channel in ("C0OPEN", "G0SECRET"):
        report = slack_check(slack_relay, channel)
        check = by_name(report)["the bot is in the channel"]
        assert report.failed and check.verdict == "failure", report.view()
        assert f"/invite @Overten in {channel}" in check.fix
    bad = slack_check(slack_relay, "C0OPEN", token="xoxb-revoked")
    assert bad.failed and "invalid_auth" in by_name(bad)["signs in"].message


def test_a_slack_app_installed_with_the_old_scopes_is_told_what_to_add(slack_relay, fake_slack):
    """The old manifest's scopes cannot read a channel's members: a warning that names the scope; no
    files:write: a failure."""
    fake_slack.add_channel("C0MEMBER")
    old = by_name(slack_check(slack_relay, "C0MEMBER"))["the bot is in the channel"]
    assert old.verdict == "warning" and "channels:read" in old.message and "reinstall" in old.fix
    fake_slack.scopes[SLACK_TOKEN] = {"commands", "chat:write", "channels:read"}
    scopes = by_name(slack_check(slack_relay, "C0MEMBER"))["has the scopes"]
    assert scopes.verdict == "failure" and "files:write" in scopes.message
