"""The /overten slash command over real HTTP, signed with slack_sdk, against the fake Slack: the
acknowledgement, response_url follow-ups, the file in the channel, continue, status, export, refusals,
and the OAuth v2 install."""

from __future__ import annotations

import itertools
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import yaml
from click.testing import CliRunner
from slack_sdk.signature import SignatureVerifier

from app.cli.commands import relay as main
from app.core.outbound import OutboundPolicy
from app.integrations.slack_manifest import BOT_SCOPES
from app.stores import installations, queues
from tests.support.keys import redis_key
from tests.support.servers import eventually

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM, CHANNEL, USER = "T0TEAM", "C0DEALS", "U0ANN"
_triggers = itertools.count(1)


def _slack_relay(make_relay, fake_slack, worker: bool):
    fake_slack.add_channel(CHANNEL)  # the bot was invited: Slack shares files only with members
    relay = make_relay(
        worker=worker,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake_slack.url + "/api/",
        slack_authorize_url=fake_slack.url + "/oauth/v2/authorize",
        slack_client_id="client-1.apps",
        slack_client_secret="client-secret",
        slack_progress_seconds=0.3,
    )
    relay.ctx.installations.save(
        installations.Installation(TEAM, "Acme", relay.tenant_id, "xoxb-test-token")
    )
    return relay


@pytest.fixture
def slack_relay(make_relay, fake_slack):
    return _slack_relay(make_relay, fake_slack, worker=True)


@pytest.fixture
def slack_web(make_relay, fake_slack):
    """The relay's web side alone, for commands answered at once: what they took in stays where it is."""
    return _slack_relay(make_relay, fake_slack, worker=False)


def nothing_taken_in(relay) -> None:
    """No command was recorded: no intake entry or command key for a worker to act on, no job queued."""
    ctx = relay.ctx
    assert ctx.redis.keys(redis_key(ctx, "slack", "command", "*")) == []
    assert [f for _, f in ctx.redis.xrange(ctx.intake.key) if f.get("kind") == "slack"] == []
    assert (
        ctx.queues.get(queues.SUBMIT).count == 0
        and ctx.queues.get(queues.SUBMIT).scheduled_job_registry.count == 0
    )


def send(
    relay,
    fake_slack,
    text: str,
    *,
    team: str = TEAM,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    response_url: str | None = None,
) -> tuple[httpx.Response, str]:
    """POST a slash command exactly as Slack does: a form body, signed with the v0 scheme."""
    response_url = response_url or fake_slack.response_url()
    body = urlencode(
        {
            "token": "deprecated",
            "team_id": team,
            "team_domain": "acme",
            "channel_id": CHANNEL,
            "channel_name": "deals",
            "user_id": USER,
            "user_name": "ann",
            "command": "/overten",
            "text": text,
            "api_app_id": "A0RELAY",
            "response_url": response_url,
            "trigger_id": f"{next(_triggers)}.42.abcdef",
        }
    )
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    answer = httpx.post(
        relay.url + "/slack/commands",
        content=body,
        timeout=10,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature,
        },
    )
    return answer, response_url


def final_reply(fake_slack, response_url: str) -> dict:
    def ended():
        replies = fake_slack.replies(response_url)
        return (
            replies
            if replies and replies[-1]["text"].startswith((":white_check_mark:", ":x:"))
            else None
        )

    return eventually(ended, 60, "the command's final reply")[-1]


def test_excel_command_reports_progress_and_posts_the_file(slack_relay, fake_slack):
    answer, response_url = send(
        slack_relay, fake_slack, "excel Pipeline by region for Q3 [[hold=excel]]"
    )
    assert answer.status_code == 200
    assert (
        answer.json()["response_type"] == "ephemeral" and "Starting a new" in answer.json()["text"]
    )

    def progress():
        return [
            r
            for r in fake_slack.replies(response_url)
            if r["text"].startswith(":hourglass_flowing_sand:")
        ]

    eventually(
        progress,
        60,
        "a progress reply while the task runs",
        show=lambda: [r["text"][:40] for r in fake_slack.replies(response_url)],
    )
    slack_relay.sandbox.release("excel")
    last = final_reply(fake_slack, response_url)
    replies = fake_slack.replies(response_url)
    assert replies[0]["text"].startswith(":hammer_and_wrench: Working on it")
    assert any(r["text"].startswith(":hourglass_flowing_sand:") for r in replies[1:-1])  # progress
    assert len(replies) <= 4 and all(r["response_type"] == "ephemeral" for r in replies)
    assert last["text"].startswith(":white_check_mark: Done") and "/files/" in last["text"]

    # the file and the final word are separate deliveries, run side by side: either may land first
    [shared] = eventually(lambda: fake_slack.shared_files(CHANNEL), 60, "the file in the channel")
    assert shared.path.read_bytes()[:2] == b"PK"  # the .xlsx, uploaded into the channel
    [message] = [m for m in fake_slack.messages if m["channel"] == CHANNEL]
    assert message["files"] and "/files/" in message["text"]


def test_continue_resumes_the_channels_document(slack_relay, fake_slack):
    _, first_url = send(slack_relay, fake_slack, "word Meeting notes for the Acme renewal")
    final_reply(fake_slack, first_url)
    answer, second_url = send(slack_relay, fake_slack, "continue Add a section on pricing")
    assert "Changing this channel's word document" in answer.json()["text"]
    final_reply(fake_slack, second_url)
    eventually(lambda: len(fake_slack.shared_files(CHANNEL)) == 2, 60, "the second file")

    record = slack_relay.client().get(f"/v1/records/slack%3A{TEAM}%3A{CHANNEL}").json()
    assert list(record["runs"]) == ["word"] and len(record["tasks"]) == 2
    assert {t["run_id"] for t in record["tasks"]} == {record["run_id"]}  # the same document, twice


def test_status_and_export(slack_relay, fake_slack):
    _, url = send(slack_relay, fake_slack, "excel Headcount plan")
    final_reply(fake_slack, url)
    status = send(slack_relay, fake_slack, "status")[0].json()
    assert status["response_type"] == "ephemeral" and ": completed." in status["text"]
    assert "/files/" in status["text"]

    answer, export_url = send(slack_relay, fake_slack, "export csv")
    assert "Making a CSV" in answer.json()["text"]
    [posted] = eventually(lambda: fake_slack.replies(export_url), 60, "the export link")
    assert posted["response_type"] == "in_channel" and f"<@{USER}>" in posted["text"]
    link = posted["text"].split("<")[2].split("|")[0]
    csv = httpx.get(link, follow_redirects=True)
    assert csv.status_code == 200 and b"," in csv.content


def test_cancel_stops_the_channels_running_document(slack_relay, fake_slack):
    _, url = send(slack_relay, fake_slack, "excel A long model [[hold=long]]")
    eventually(lambda: fake_slack.replies(url), 60, "the command's first reply")
    answer, cancel_url = send(slack_relay, fake_slack, "cancel")
    assert answer.json()["text"].startswith(":octagonal_sign: Cancelling task")
    [said] = eventually(lambda: fake_slack.replies(cancel_url), 60, "the cancel's word")
    assert said["response_type"] == "in_channel" and f"<@{USER}> cancelled task" in said["text"]
    with slack_relay.client() as client:  # the tenant's audit log names who, as Slack said
        [entry] = client.get("/v1/audit", params={"action": "task.cancelled"}).json()["items"]
    assert (entry["actor_kind"], entry["actor_id"], entry["result"], entry["source"]) == (
        "person",
        f"slack:{TEAM}:{USER}",
        "ok",
        "slack",
    )
    assert final_reply(fake_slack, url)["text"].startswith(":x:"), (
        "the command's own final word: cancelled"
    )
    nothing = send(slack_relay, fake_slack, "cancel")[0].json()
    assert (
        nothing["text"] == "Nothing is being made in this channel right now (the latest cancelled)."
    )


def test_a_spent_budget_is_said_in_words_and_nothing_starts(slack_relay, fake_slack):
    with slack_relay.client() as client:
        client.put(
            "/v1/budgets/tenant", json={"monthly_credits": 10, "hard_cap": True}
        ).raise_for_status()
        # 40 of 10
        slack_relay.wait_task(client, slack_relay.submit(client, prompt="Memo")["task_id"])
    answer = send(slack_relay, fake_slack, "excel Pipeline by region")[0].json()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith(
        ":no_entry: Nothing was started. The monthly budget of 10 credits for this "
        "tenant is spent (40 credits since "
    )
    nothing_taken_in(slack_relay)
    assert len(slack_relay.client().get("/v1/tasks").json()["items"]) == 1, "only the API's submit"


def test_a_capped_budget_with_credits_left_lets_a_command_start(slack_web, fake_slack):
    """The intake script stops at a capped budget; the check that follows finds it not spent, and the
    command is stored then."""
    with slack_web.client() as client:
        client.put(
            "/v1/budgets/tenant", json={"monthly_credits": 1000, "hard_cap": True}
        ).raise_for_status()
    answer = send(slack_web, fake_slack, "excel Pipeline by region")[0].json()
    assert answer["text"].startswith(":hourglass_flowing_sand: Starting a new"), answer
    [entry] = [f for _, f in slack_web.ctx.redis.xrange(slack_web.ctx.intake.key)]
    assert entry["job"] == "start_document"


def test_a_failed_job_is_reported(slack_relay, fake_slack):
    _, url = send(slack_relay, fake_slack, "slides Board deck [[fail]]")
    assert final_reply(fake_slack, url)["text"].startswith(":x: The document could not be made")
    assert fake_slack.shared_files() == []


def test_after_30_minutes_the_bot_token_posts_the_final_word(slack_relay, fake_slack):
    """Slack refuses a response_url past its 30 minutes (``expired_url``): the final word falls back to
    chat.postMessage with the bot token."""
    response_url = fake_slack.response_url()
    # Slack takes no message on it, from the first
    fake_slack.age_response_url(response_url, 31 * 60)
    answer, _ = send(slack_relay, fake_slack, "excel Capacity model", response_url=response_url)
    assert answer.status_code == 200

    def mentioned():
        return [
            m
            for m in fake_slack.messages
            if m["text"].startswith(f"<@{USER}> :white_check_mark: Done")
        ]

    [message] = eventually(mentioned, 60, "chat.postMessage with the final word")
    assert message["channel"] == CHANNEL
    assert fake_slack.replies(response_url) == []


def test_past_the_relays_deadline_the_final_word_skips_the_response_url(fake_slack):
    """The relay stops using a response_url a minute before Slack would (its deadline): past it, the final word
    goes with the bot token at once, even though this response_url would still take a message."""
    from connectors.base import Delivery, Environment
    from connectors.slack_reply import KIND

    fake_slack.add_channel(CHANNEL)  # the bot was invited
    response_url = fake_slack.response_url()  # young: Slack takes messages on it
    deadline = time.time() + 29 * 60
    config = {
        "response_url": response_url,
        "deadline": deadline,
        "bot_token": "xoxb-test-token",
        "channel": CHANNEL,
        "user": USER,
    }
    event = {
        "type": "task.completed",
        "data": {"status": "completed", "result": {"summary": "Built it."}},
    }
    env = Environment(
        http=lambda timeout=30: OutboundPolicy("127.0.0.0/8").client(timeout=timeout),
        save_state=lambda *_: None,  # type: ignore[arg-type]
        settings={"slack_api_url": fake_slack.url + "/api/"},
    )

    before = KIND.deliver(
        Delivery("dlv_before", "slack_reply", config, event), None, env, now=deadline - 1
    )
    assert (
        before.location == "the command's response_url"
        and len(fake_slack.replies(response_url)) == 1
    )
    after = KIND.deliver(
        Delivery("dlv_after", "slack_reply", config, event), None, env, now=deadline + 1
    )
    assert (
        after.location.startswith(f"slack:{CHANNEL}/message ")
        and len(fake_slack.replies(response_url)) == 1
    )
    [message] = fake_slack.messages
    assert message["text"] == f"<@{USER}> :white_check_mark: Done: Built it."


def test_progress_stops_at_the_response_urls_deadline(slack_web, fake_slack):
    """A progress look before the deadline posts the phase and looks again later; one past it does neither."""
    from app.domain.slack import background

    ctx = slack_web.ctx
    task = ctx.tasks.create(slack_web.tenant_id, format="excel", prompt="p")
    ctx.tasks.set(task.task_id, phase="agent_turn", progress=35)
    response_url, deadline = fake_slack.response_url(), time.time() + 29 * 60
    ctx.slack_sessions.start(
        task.task_id, ctx.box.seal(response_url), deadline, life=background.RESPONSE_URL_LIFE
    )
    progress = ctx.queues.get(queues.SUBMIT).scheduled_job_registry

    background.watch_progress(ctx, task.task_id, now=deadline - 1)
    assert [r["text"] for r in fake_slack.replies(response_url)] == [
        ":hourglass_flowing_sand: Agent turn: 35%."
    ]
    assert progress.count == 1, "the next look is scheduled"
    ctx.tasks.set(task.task_id, phase="executing_plan")
    background.watch_progress(ctx, task.task_id, now=deadline + 1)
    assert len(fake_slack.replies(response_url)) == 1 and progress.count == 1, (
        "past the deadline: nothing more"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dance", "I don't know `dance`"),
        ("", "*/overten* builds documents"),
        ("help", "*/overten* builds documents"),
        ("excel", "Tell me what to build"),
        ("excel " + "x" * 20_001, "I can't use that prompt"),
        ("continue Add a chart", "no document in this channel yet"),
        ("export pdf", "no finished document in this channel"),
        ("export exe", "Export as one of pdf"),
        ("status", "no document in this channel yet"),
    ],
)
def test_mistakes_get_an_ephemeral_explanation(slack_web, fake_slack, text, expected):
    answer, response_url = send(slack_web, fake_slack, text)
    assert answer.status_code == 200 and answer.json()["response_type"] == "ephemeral"
    assert expected in answer.json()["text"]
    nothing_taken_in(slack_web)
    assert (
        slack_web.client().get("/v1/events").json()["items"] == []
        and fake_slack.replies(response_url) == []
    )


def test_unsigned_stale_and_unknown_requests_are_refused(slack_web, fake_slack, reliability):
    forged, _ = send(slack_web, fake_slack, "excel x", secret="not-the-signing-secret")
    assert forged.status_code == 401 and forged.json()["error"]["field"] == "X-Slack-Signature"
    stale, _ = send(slack_web, fake_slack, "excel x", timestamp=int(time.time()) - 6 * 60)
    assert stale.status_code == 401
    unsigned = httpx.post(slack_web.url + "/slack/commands", content=b"team_id=T0TEAM")
    assert unsigned.status_code == 401 and unsigned.headers["content-type"] == "application/json"
    stranger, _ = send(slack_web, fake_slack, "excel x", team="T0STRANGER")
    assert "not connected to Overten Relay" in stranger.json()["text"]
    assert "/slack/install" in stranger.json()["text"]
    nothing_taken_in(slack_web)
    reliability(
        fault="Slack commands forged, 6 minutes stale, unsigned, or from a workspace not installed",
        tried=4,
        lost=0,
        duplicated="-",
        notes="401 (or a polite refusal) and nothing taken in",
    )


def test_a_malformed_command_names_the_field(slack_web):
    body = urlencode(
        {
            "team_id": TEAM,
            "channel_id": "not a channel",
            "user_id": USER,
            "command": "/overten",
            "text": "help",
            "response_url": "https://hooks.slack.com/commands/1",
        }
    )
    stamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=stamp, body=body)
    answer = httpx.post(
        slack_web.url + "/slack/commands",
        content=body,
        headers={
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "channel_id"


def test_install_flow_maps_the_workspace_to_the_tenant(slack_relay, fake_slack):
    link = slack_relay.client().post("/slack/install-links").json()["url"]
    assert link.startswith(slack_relay.config.public_url + "/slack/install?link=")
    to_slack = httpx.get(link)
    assert to_slack.status_code == 302
    consent = urlsplit(to_slack.headers["location"])
    asked = parse_qs(consent.query)
    assert asked["scope"] == [",".join(BOT_SCOPES)]
    assert {"channels:join", "channels:read"} <= set(BOT_SCOPES), "the bot may join a channel"
    assert asked["redirect_uri"] == [slack_relay.config.public_url + "/slack/oauth/callback"]
    back = httpx.get(to_slack.headers["location"])  # the admin clicks Allow
    callback = back.headers["location"]
    done = httpx.get(callback)
    assert done.status_code == 200 and "installed" in done.text and "Acme Corp" in done.text

    installation = slack_relay.ctx.installations.find("T0INSTALL")
    assert installation is not None and installation.tenant_id == slack_relay.tenant_id
    assert installation.bot_token in fake_slack.valid_tokens
    raw = slack_relay.ctx.redis.hget(
        redis_key(slack_relay.ctx, "slack", "install", "T0INSTALL"), "bot_token"
    )
    assert installation.bot_token not in raw  # encrypted at rest
    with slack_relay.client() as client:  # in the tenant's audit log, without the token
        [entry] = client.get("/v1/audit", params={"action": "connection.created"}).json()["items"]
    assert (entry["target_id"], entry["target_name"], entry["actor_id"]) == (
        "T0INSTALL",
        "Acme Corp",
        "slack_install_link",
    )

    replayed = httpx.get(callback)
    assert replayed.status_code == 409 and "already used" in replayed.text
    forged = httpx.get(callback.replace("state=", "state=x"))
    assert forged.status_code == 403 and "not valid" in forged.text
    cancelled = httpx.get(slack_relay.url + "/slack/oauth/callback?error=access_denied&state=s")
    assert cancelled.status_code == 200 and "cancelled" in cancelled.text
    bad_link = httpx.get(slack_relay.url + "/slack/install?link=tampered-link-value")
    assert bad_link.status_code == 403 and "not valid" in bad_link.text

    answer, url = send(slack_relay, fake_slack, "excel Welcome pack", team="T0INSTALL")
    assert "Starting a new" in answer.json()["text"]
    assert final_reply(fake_slack, url)["text"].startswith(":white_check_mark:")


def test_manifest_is_served_and_exported(slack_web, tmp_path):
    manifest = yaml.safe_load(httpx.get(slack_web.url + "/connectors/slack/manifest.yml").text)
    [command] = manifest["features"]["slash_commands"]
    assert (
        command["command"] == "/overten"
        and command["url"] == slack_web.config.public_url + "/slack/commands"
    )
    assert manifest["oauth_config"]["scopes"]["bot"] == [
        "commands",
        "chat:write",
        "files:write",
        "channels:join",
        "channels:read",
        "groups:read",
    ]
    assert manifest["oauth_config"]["redirect_urls"] == [
        slack_web.config.public_url + "/slack/oauth/callback"
    ]
    result = CliRunner().invoke(
        main,
        [
            "connectors",
            "export",
            "slack",
            str(tmp_path),
            "--public-url",
            "https://relay.example.com",
        ],
    )
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load((tmp_path / "manifest.yml").read_text())
    assert (
        exported["features"]["slash_commands"][0]["url"]
        == "https://relay.example.com/slack/commands"
    )


def test_single_workspace_mode_needs_no_install(make_relay):
    from dataclasses import replace

    from app.stores.context import build_context

    relay = make_relay(worker=False)
    assert relay.ctx.installations.find("T0ANY") is None
    configured = build_context(
        replace(relay.config, slack_bot_token="xoxb-config-token", slack_tenant_id=relay.tenant_id)
    )
    found = configured.installations.find("T0ANY")
    assert found is not None and (found.tenant_id, found.bot_token) == (
        relay.tenant_id,
        "xoxb-config-token",
    )
    assert configured.installations.tenant_for("T0ANY") == relay.tenant_id


def test_a_command_while_redis_is_full_gets_a_short_answer_not_a_time_out(make_relay, fake_slack):
    import tempfile
    from pathlib import Path

    from app.cli.embedded_redis import EmbeddedRedis

    redis = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="relay-slack-full-")))
    try:
        relay = make_relay(
            redis_url=redis.start(),
            worker=False,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=fake_slack.url + "/api/",
        )
        relay.ctx.installations.save(
            installations.Installation(TEAM, "Acme", relay.tenant_id, "xoxb-test-token")
        )
        relay.ctx.redis.config_set("maxmemory", 1)
        answer, _ = send(relay, fake_slack, "excel Q3 pipeline by region")
        relay.ctx.redis.config_set("maxmemory", 0)
    finally:
        redis.stop()
    assert answer.status_code == 200 and answer.json()["response_type"] == "ephemeral"
    assert "can't take commands right now (its storage is full)" in answer.json()["text"]
    assert "Nothing was started" in answer.json()["text"]
