"""Server-side request forgery, tried as an attacker with a tenant's API key (or an event's signature)
would, over real HTTP against a running relay: URLs the tenant or an event chooses that lead, directly or
through a redirect, to an internal address. The relay's allow-list here admits 127.0.0.1 (the sandbox and
the fakes) and nothing else: the "metadata" server listens on 127.0.0.2, an internal address."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook
from werkzeug.wrappers import Request, Response

from tests.relay.test_deliveries import delivered
from tests.support.servers import ServedApp, eventually

SECRET = "AKIA-METADATA-SECRET-7f3c"
"""What the internal server answers: no tenant may ever read it."""


class Internal:
    """A cloud metadata service on an internal address, counting who asked."""

    def __init__(self):
        self.hits: list[str] = []
        self.served = ServedApp(self.app, host="127.0.0.2").start()
        self.url = self.served.url

    def app(self, environ, start_response):
        request = Request(environ)
        self.hits.append(request.path)
        body = json.dumps({"AccessKeyId": SECRET, "Token": SECRET})
        return Response(body, content_type="application/json")(environ, start_response)


class Redirector:
    """A public server the tenant controls: every request is answered with a redirect to ``target``."""

    def __init__(self, target: str, status: int = 307):
        self.target, self.status, self.hits = target, status, []
        self.served = ServedApp(self.app).start()
        self.url = self.served.url

    def app(self, environ, start_response):
        self.hits.append(Request(environ).path)
        answer = Response("", status=self.status, headers={"Location": self.target})
        return answer(environ, start_response)


@pytest.fixture
def internal():
    server = Internal()
    yield server
    server.served.stop()


@pytest.fixture
def redirector(internal):
    server = Redirector(internal.url + "/computeMetadata/v1/token")
    yield server
    server.served.stop()


def _drive_to(relay, client, credentials) -> dict:
    destination = {
        "kind": "gdrive",
        "config": {"folder_id": "folder-reports", "credentials": credentials},
    }
    return relay.submit(client, prompt="Sales", record_key="deal:1", destinations=[destination])


def test_a_token_uri_that_is_not_googles_is_refused(make_relay, fake_drive, redirector, internal):
    relay = make_relay(
        outbound_allow="127.0.0.1/32",
        drive_api_url=fake_drive.url,
        drive_token_url=fake_drive.url + "/token",
    )
    credentials = {**fake_drive.service_account, "token_uri": redirector.url + "/token"}
    with relay.client() as client:
        task = _drive_to(relay, client, credentials)
        [dead] = delivered(relay, client, task["task_id"])
        shown = client.get(f"/v1/tasks/{task['task_id']}").text
    assert internal.hits == [] and redirector.hits == []
    assert dead["state"] == "dead" and "not Google's token endpoint" in dead["last_error"]
    assert SECRET not in shown


def test_an_allowed_token_uri_that_redirects_inside_is_not_followed(
    make_relay, fake_drive, redirector, internal, reliability
):
    relay = make_relay(
        outbound_allow="127.0.0.1/32",
        drive_api_url=fake_drive.url,
        drive_token_url=fake_drive.url + "/token",
        google_token_uris=redirector.url + "/token",  # the operator allowed it
    )
    credentials = {**fake_drive.service_account, "token_uri": redirector.url + "/token"}
    with relay.client() as client:
        task = _drive_to(relay, client, credentials)
        [dead] = delivered(relay, client, task["task_id"])
        shown = client.get(f"/v1/tasks/{task['task_id']}").text
    assert redirector.hits == ["/token"], "asked once"
    assert internal.hits == [], "the 307 to an internal address was never followed"
    assert dead["state"] == "dead" and "Google refused the credentials" in dead["last_error"]
    assert SECRET not in shown and "computeMetadata" not in shown
    reliability(
        fault="a Drive token_uri answering 307 to an internal metadata server",
        tried=2,
        lost=0,
        duplicated="-",
        notes="not followed; the task view shows the status and error code only",
    )


def _forged_completion(relay, task_id: str, download_url: str) -> None:
    """A task.completed event for the relay's task, signed with the tenant's webhook secret (anyone who can sign
    an event), whose result's download_url is the attacker's."""
    task = relay.ctx.tasks.get(task_id)
    assert task is not None and task.upstream_task_id and task.run_id
    when = datetime.now(UTC)
    data = {
        "task_id": task.upstream_task_id,
        "run_id": task.run_id,
        "status": "completed",
        "phase": None,
        "turn_index": 2,
        "progress": 100,
        "created_at": "2026-11-22T10:00:00.000Z",
        "updated_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "result": {
            "download_url": download_url,
            "edit_url": download_url,
            "summary": "s",
            "artifacts": [],
        },
        "error": None,
        "credits_used": 50,
        "duration_ms": 1000,
    }
    event = {"type": "task.completed", "id": "evt_forged", "created_at": data["updated_at"]}
    body = json.dumps({**event, "data": data})
    headers = {
        "webhook-id": "evt_forged",
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(relay.sandbox.webhook_secret).sign("evt_forged", when, body),
        "content-type": "application/json",
    }
    token = relay.ctx.tokens.webhook(relay.tenant_id, task_id)
    answer = httpx.post(f"{relay.url}/webhooks/upstream/{token}", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def test_an_events_download_url_is_never_fetched(make_relay, internal, tmp_path, reliability):
    """The event's URL is on no host the API vouches for: the relay fetches from the API's location instead
    (GET /runs/{id}/download), and never asks the event's."""
    relay = make_relay(outbound_allow="127.0.0.1/32")
    with relay.client() as client:
        # a run with a finished document, then a second turn of it (same record) held at the sandbox
        relay.wait_task(
            client, relay.submit(client, prompt="Sales", record_key="deal:7")["task_id"]
        )
        task = relay.submit(
            client,
            prompt="More [[hold=forged]]",
            record_key="deal:7",
            destinations=[{"kind": "folder", "config": {"path": "forged"}}],
        )
        relay.sandbox.wait_held("forged")
        eventually(
            lambda: relay.ctx.tasks.get(task["task_id"]).run_id, 60, "the hand-over recorded"
        )
        _forged_completion(relay, task["task_id"], internal.url + "/latest/meta-data/iam")
        [done] = delivered(relay, client, task["task_id"])
        shown = client.get(f"/v1/tasks/{task['task_id']}").text
    relay.sandbox.release("forged")
    assert internal.hits == [], "the URL in the event was never asked"
    assert done["state"] == "delivered", done["last_error"]
    written = (tmp_path / "deliveries" / relay.tenant_id / "forged").glob("*")
    assert [path.read_bytes()[:2] for path in written] == [b"PK"], "the API's document (xlsx)"
    assert SECRET not in shown
    reliability(
        fault="a signed event whose download_url points at an internal server",
        tried=1,
        lost=0,
        duplicated="-",
        notes="the file came from the API's fresh download location; the URL was never fetched",
    )


WRAPPED = {
    "IPv4-compatible": "[::127.0.0.2]",
    "6to4": "[2002:7f00:2::1]",
    "NAT64": "[64:ff9b::7f00:2]",
    "Teredo": "[2001:0:4136:e378:8000:63bf:80ff:fffd]",
}
"""127.0.0.2, the internal server's address, inside IPv6 forms."""


def test_an_internal_ipv4_address_inside_ipv6_forms_is_refused(make_relay, internal, reliability):
    relay = make_relay(outbound_allow="127.0.0.1/32")
    port = internal.served.port
    destinations = [
        {"kind": "webhook", "config": {"url": f"http://{host}:{port}/hook"}}
        for host in WRAPPED.values()
    ]
    with relay.client() as client:
        task = relay.submit(client, prompt="x", destinations=destinations)
        done = delivered(relay, client, task["task_id"], count=len(WRAPPED))
    assert internal.hits == []
    for delivery in done:
        assert delivery["state"] == "dead" and delivery["attempts"] == 1, delivery
        assert "non-public address" in delivery["last_error"], delivery["last_error"]
    reliability(
        fault="webhook URLs with 127.0.0.2 inside IPv4-compatible, 6to4, NAT64 and Teredo forms",
        tried=len(WRAPPED),
        lost=0,
        duplicated="-",
        notes="each refused by the policy at the first attempt, nothing sent",
    )


class Talkative:
    """A tenant's own S3-compatible endpoint, public, whose error answers carry what it read elsewhere."""

    def __init__(self):
        self.served = ServedApp(self.app).start()
        self.url = self.served.url

    def app(self, environ, start_response):
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
            f"<Message>{SECRET}</Message><BucketName>{SECRET}</BucketName></Error>"
        )
        answer = Response(body, status=403, content_type="application/xml")
        return answer(environ, start_response)


def test_no_text_of_a_third_partys_answer_reaches_the_tenant(make_relay):
    """What an endpoint the tenant chose says in its error is not shown: its status and code are."""
    endpoint = Talkative()
    relay = make_relay(outbound_allow="127.0.0.1/32")
    s3 = {
        "kind": "s3",
        "config": {
            "bucket": "reports",
            "endpoint_url": endpoint.url,
            "addressing_style": "path",
            "access_key_id": "testing",
            "secret_access_key": "testing",
        },
    }
    try:
        with relay.client() as client:
            task = relay.submit(client, prompt="Sales", destinations=[s3])
            [dead] = delivered(relay, client, task["task_id"])
            shown = client.get(f"/v1/tasks/{task['task_id']}").text
            letters = client.get("/v1/deliveries").text
    finally:
        endpoint.served.stop()
    assert dead["state"] == "dead" and "AccessDenied" in dead["last_error"]
    assert SECRET not in shown and SECRET not in letters


def test_a_response_url_that_redirects_inside_is_not_followed(internal, fake_slack):
    """The last word of a Slack command goes to its response_url through the policy: a 302 to an internal
    address is an answer, not a place to go (slack_sdk's urllib followed it)."""
    from app.core.outbound import OutboundPolicy
    from connectors.base import Delivery, Environment
    from connectors.slack_reply import KIND

    redirector = Redirector(internal.url + "/latest/meta-data", status=302)
    policy = OutboundPolicy("127.0.0.1/32")
    env = Environment(
        http=lambda timeout=30: policy.client(timeout=timeout),
        save_state=lambda *_: None,  # type: ignore[arg-type]
        # check_url: what the relay gave before it checked at connect time
        settings={"slack_api_url": fake_slack.url + "/api/", "check_url": policy.check},
    )
    config = {
        "response_url": redirector.url + "/commands/T1/1/abc",
        "deadline": 2e9,
        "bot_token": "xoxb-test-token",
        "channel": "C1",
        "user": "U1",
    }
    event = {"type": "task.completed", "data": {"status": "completed", "result": {"summary": "s"}}}
    try:
        with pytest.raises(Exception, match="302") as refused:
            KIND.deliver(Delivery("dlv_1", "slack_reply", config, event), None, env, now=1.0)
    finally:
        redirector.served.stop()
    assert redirector.hits == ["/commands/T1/1/abc"] and internal.hits == []
    assert SECRET not in str(refused.value)


def test_the_smtp_connection_goes_to_the_address_that_was_checked(smtp_server, monkeypatch):
    """DNS rebinding: the SMTP host's name is public-looking when checked, internal right after. The socket goes
    to the checked address, and STARTTLS still checks the certificate against the name."""
    import socket
    import threading

    from app.core.outbound import OutboundPolicy
    from connectors.base import Delivery, Environment
    from connectors.email import KIND
    from tests.support.smtp import SMTP_NAME

    inside = socket.create_server(("127.0.0.2", smtp_server.port))
    reached: list[str] = []

    def listen():
        with contextlib.suppress(OSError):
            connection, _ = inside.accept()
            reached.append("internal")
            connection.close()

    threading.Thread(target=listen, daemon=True).start()
    real, answers = socket.getaddrinfo, iter(["127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        named = next(answers, "127.0.0.2") if host == SMTP_NAME else host
        return real(named, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    policy = OutboundPolicy("127.0.0.1/32")
    env = Environment(
        http=None,  # type: ignore[arg-type]
        save_state=lambda *_: None,
        settings={
            "connect": policy.connect,
            "check_host": policy.check_host,  # what the relay gave before
            "email_attach_max_bytes": 1,
        },
    )
    config = {
        "to": ["ops@example.com"],
        "from": "relay@example.com",
        "host": SMTP_NAME,
        "port": smtp_server.port,
        "security": "starttls",
        "username": "relay",
        "password": "s3cret-pass",
        "ca_pem": smtp_server.cert.read_text(),
    }
    event = {"type": "budget.threshold", "data": {"summary": "80% spent"}}
    try:
        KIND.deliver(Delivery("dlv_smtp", "email", config, event), None, env)
    finally:
        inside.close()
    assert reached == [] and len(smtp_server.mailbox.messages) == 1
