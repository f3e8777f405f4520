"""Slack as it really is (docs/platforms.md, "Slack"), the real relay against the strict fake: the bot must be
a member of the channel (joined when the app may, else "invite the bot"), workspaces that restrict uploads,
and the files methods' rate tier."""

from __future__ import annotations

import pytest

from connectors.slack.fake import OLD_SCOPES, UPLOAD_POLICIES
from tests.relay.test_deliveries import delivered

TOKEN = "xoxb-test-token"


def submit(relay, client, channels: list[str], prompt: str = "Sales by region"):
    destinations = [
        {"kind": "slack", "config": {"channel": channel, "bot_token": TOKEN}}
        for channel in channels
    ]
    return relay.submit(client, prompt=prompt, destinations=destinations)


def test_a_public_channel_the_bot_is_not_in_is_joined_when_the_app_may(make_relay, fake_slack):
    """Slack shares a file only in a channel the bot is a member of (not_in_channel otherwise): with
    channels:join, the relay joins the public channel and the file lands."""
    channel = fake_slack.add_channel("C0PUBLIC", members=set())
    fake_slack.scopes[TOKEN] = {*OLD_SCOPES, "channels:join"}
    relay = make_relay(slack_api_url=fake_slack.url + "/api/")
    with relay.client() as client:
        task = submit(relay, client, ["C0PUBLIC"])
        [done] = delivered(relay, client, task["task_id"])
    assert done["state"] == "delivered" and done["attempts"] == 1, done["last_error"]
    assert "U0BOT" in channel.members and len(fake_slack.shared_files("C0PUBLIC")) == 1
    assert "conversations.join" in fake_slack.calls


@pytest.mark.parametrize(
    ("private", "scopes", "why"),
    [
        (False, set(OLD_SCOPES), "channels:join"),
        (True, {*OLD_SCOPES, "channels:join"}, "private channel the bot was not invited to"),
    ],
    ids=["public-without-channels-join", "private"],
)
def test_a_channel_the_bot_cannot_join_dead_letters_saying_invite_the_bot(
    make_relay, fake_slack, private, scopes, why
):
    """Without channels:join, or in a private channel (which only an invite opens, and which Slack does not
    even show the bot: channel_not_found), the dead letter says to invite the bot to the channel, and why the
    relay could not join."""
    channel_id = "G0SECRET" if private else "C0PUBLIC"
    fake_slack.add_channel(channel_id, private=private, members={"U0ANN"})
    fake_slack.scopes[TOKEN] = scopes
    relay = make_relay(slack_api_url=fake_slack.url + "/api/")
    with relay.client() as client:
        task = submit(relay, client, [channel_id])
        [dead] = delivered(relay, client, task["task_id"])
    assert dead["state"] == "dead" and dead["attempts"] == 1, dead
    message = dead["last_error"]
    assert "invite the bot" in message.lower() and channel_id in message and why in message, message
    assert fake_slack.shared_files() == []


@pytest.mark.parametrize("policy", UPLOAD_POLICIES)
def test_a_workspace_that_restricts_uploads_gets_the_link_instead(make_relay, fake_slack, policy):
    """A workspace whose admins disable uploads, or allow only images or some file types: the summary and the
    link go as a message, as for a workspace that restricts the size."""
    fake_slack.add_channel("C0123ABCD")
    fake_slack.upload_policy = policy
    relay = make_relay(slack_api_url=fake_slack.url + "/api/")
    with relay.client() as client:
        task = submit(relay, client, ["C0123ABCD"])
        [done] = delivered(relay, client, task["task_id"])
    assert done["state"] == "delivered" and done["location"].endswith("(link only)"), done
    assert fake_slack.shared_files() == [] and "/files/" in fake_slack.messages[0]["text"]


def test_files_to_three_channels_keep_to_the_files_tier_and_none_spends_an_attempt(
    make_relay, fake_slack
):
    """The files methods are Tier 4 per workspace, and each delivery makes two such calls: twelve deliveries
    to three channels take their slots on one schedule per workspace, and a 429 (a call late after its slot)
    waits its Retry-After without spending an attempt. The fake's window and the relay's pace are scaled
    alike (5 calls a second for Slack's 100 a minute) so that it runs in seconds."""
    channels = ["C0EAST", "C0WEST", "C0NORTH"]
    for channel in channels:
        fake_slack.add_channel(channel)
    fake_slack.tier_4_limit, fake_slack.tier_4_seconds = 5, 1.0
    relay = make_relay(slack_api_url=fake_slack.url + "/api/", slack_files_per_minute=300.0)
    with relay.client() as client:
        tasks = [submit(relay, client, channels * 2, prompt=f"Region {n}") for n in range(2)]
        done = [d for task in tasks for d in delivered(relay, client, task["task_id"], count=6)]
    assert [d["state"] for d in done] == ["delivered"] * 12, [d["last_error"] for d in done]
    assert sum(d["attempts"] for d in done) == 12, "neither a slot nor a 429 costs an attempt"
    assert fake_slack.lockout.early == []
    assert sorted(len(fake_slack.shared_files(c)) for c in channels) == [4, 4, 4]


@pytest.mark.parametrize("private", [False, True], ids=["public", "private"])
def test_the_commands_last_word_by_bot_token_joins_the_channel_or_says_invite_the_bot(
    fake_slack, private
):
    """Past its response_url, an /overten command's last word goes with chat.postMessage to the channel it
    was run in, which the bot may not be in: it joins a public one (channels:join, as the manifest asks),
    and for a private one the failure says to invite the bot."""
    from app.core.outbound import OutboundPolicy
    from app.integrations.slack_manifest import BOT_SCOPES
    from connectors.base import Delivery, Environment, Permanent
    from connectors.slack_reply import KIND

    channel_id = "G0TEAM" if private else "C0TEAM"
    channel = fake_slack.add_channel(channel_id, private=private, members=set())
    fake_slack.scopes[TOKEN] = set(BOT_SCOPES)
    config = {
        "response_url": fake_slack.response_url(),
        "deadline": 0,  # past it: the bot token
        "bot_token": TOKEN,
        "channel": channel_id,
        "user": "U0ANN",
    }
    event = {
        "type": "task.completed",
        "data": {"status": "completed", "result": {"summary": "Done."}},
    }
    env = Environment(
        http=lambda timeout=30: OutboundPolicy("127.0.0.0/8").client(timeout=timeout),
        save_state=lambda *_: None,  # type: ignore[arg-type]
        settings={"slack_api_url": fake_slack.url + "/api/"},
    )
    delivery = Delivery("dlv_reply", "slack_reply", config, event)
    if private:
        with pytest.raises(Permanent, match="Invite the bot to the channel") as refused:
            KIND.deliver(delivery, None, env, now=1.0)
        assert channel_id in refused.value.message and fake_slack.messages == []
        return
    outcome = KIND.deliver(delivery, None, env, now=1.0)
    assert (
        outcome.location.startswith(f"slack:{channel_id}/message ") and "U0BOT" in channel.members
    )
    [message] = fake_slack.messages
    assert message["channel"] == channel_id and message["text"].startswith("<@U0ANN>")
