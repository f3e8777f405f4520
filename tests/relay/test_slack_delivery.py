"""Slack destination against the fake Slack Web API: the 3-step external upload, throttling, failures."""

from __future__ import annotations

import httpx
import pytest

from tests.relay.test_deliveries import delivered

TOKEN = "xoxb-test-token"


@pytest.fixture
def slack_relay(make_relay, fake_slack):
    fake_slack.add_channel("C0123ABCD")  # the bot was invited: Slack shares files only with members
    return make_relay(slack_api_url=fake_slack.url + "/api/")


def submit_to_slack(relay, client, **config):
    destination = {
        "kind": "slack",
        "config": {"channel": "C0123ABCD", "bot_token": TOKEN, **config},
    }
    return relay.submit(
        client, prompt="Sales by region", record_key="deal:7", destinations=[destination]
    )


def test_file_lands_in_the_channel_with_summary_and_link(slack_relay, fake_slack):
    with slack_relay.client() as client:
        task = submit_to_slack(slack_relay, client, thread_ts="1700000000.000100")
        [done] = delivered(slack_relay, client, task["task_id"])
        finished = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert done["state"] == "delivered" and done["location"].startswith("slack:C0123ABCD/F")
    [shared] = fake_slack.shared_files("C0123ABCD")
    original = httpx.get(finished["result"]["download_url"]).content
    assert shared.path.read_bytes() == original and shared.thread_ts == "1700000000.000100"
    [message] = fake_slack.messages
    assert finished["result"]["summary"] in message["text"] and "/files/" in message["text"]
    assert fake_slack.calls == ["files.getUploadURLExternal", "files.completeUploadExternal"]


def test_rate_limits_and_server_errors_are_retried(slack_relay, fake_slack):
    fake_slack.fail_next(1, status=429, retry_after=1)
    fake_slack.fail_next(1, status=503, retry_after=None)
    with slack_relay.client() as client:
        task = submit_to_slack(slack_relay, client)
        [done] = delivered(slack_relay, client, task["task_id"])
    assert fake_slack.lockout.early == [], (
        "the retry waited for Retry-After: Slack refuses calls before it"
    )
    # the 429 waited its Retry-After without spending an attempt (Throttled); the 503 spent one
    assert done["state"] == "delivered" and done["attempts"] == 2
    assert len(fake_slack.shared_files()) == 1


def test_size_restricted_workspace_gets_the_link_instead(slack_relay, fake_slack):
    fake_slack.max_upload_bytes = 10
    with slack_relay.client() as client:
        task = submit_to_slack(slack_relay, client)
        [done] = delivered(slack_relay, client, task["task_id"])
    assert done["state"] == "delivered" and done["location"].endswith("(link only)")
    assert fake_slack.shared_files() == [] and "/files/" in fake_slack.messages[0]["text"]


def test_bad_token_is_permanent_and_a_fixed_saved_destination_replays(slack_relay, fake_slack):
    body = {
        "name": "deals",
        "kind": "slack",
        "config": {"channel": "C0123ABCD", "bot_token": "xoxb-revoked"},
    }
    with slack_relay.client() as client:
        refused = client.post("/v1/destinations", json=body).json()["error"]
        assert refused["code"] == "destination_check_failed", refused
        assert "invalid_auth" in refused["message"], "the check names it at once"
        saved = client.post("/v1/destinations?check=false", json=body).json()
        task = slack_relay.submit(client, prompt="x", destinations=[{"id": saved["id"]}])
        [dead] = delivered(slack_relay, client, task["task_id"])
        assert dead["state"] == "dead" and "invalid_auth" in dead["last_error"]
        fake_slack.valid_tokens.add("xoxb-revoked")  # the workspace admin fixed the app
        client.post(f"/v1/deliveries/{dead['delivery_id']}/replay").raise_for_status()
        [done] = delivered(slack_relay, client, task["task_id"])
    assert done["state"] == "delivered" and len(fake_slack.shared_files()) == 1
