"""Email against SMTP servers as strict as the real ones (tests/support/smtp.py): greylisting at RCPT, a SIZE
limit, Microsoft 365 with basic authentication off, and XOAUTH2 sign-in to Microsoft 365 and Gmail with tokens
from the test's identity platform (connectors/email/fake.py)."""

from __future__ import annotations

import socket

import pytest

from app.cli.devstack import free_port
from app.domain import checks
from connectors.base import Verdict
from connectors.email.fake import GOOGLE_MAIL_SCOPE, FakeMailIdentity, GoogleUser, MicrosoftApp
from tests.relay.test_deliveries import delivered
from tests.relay.test_email_delivery import email_destination
from tests.relay_fixtures import _service_account_keys
from tests.support.servers import ServedApp, eventually
from tests.support.smtp import SmtpServer

MAILBOX = "reports@contoso.com"


@pytest.fixture
def identity():
    """The identity platforms: a Microsoft app allowed to send as MAILBOX, a Google service account delegated
    the mail scope, and a Gmail user's refresh token."""
    private_pem, public_pem = _service_account_keys()
    fake = FakeMailIdentity(
        apps={"relay-app": MicrosoftApp("app-secret", frozenset({MAILBOX}))},
        service_accounts={"key-1": public_pem},
        delegation={"mailer@project.iam.gserviceaccount.com": frozenset({GOOGLE_MAIL_SCOPE})},
        refresh_tokens={
            "1//mail-refresh": GoogleUser("client-id.apps", "client-secret", "ana@example.com")
        },
    )
    fake.service_account = {  # type: ignore[attr-defined]
        "type": "service_account",
        "client_email": "mailer@project.iam.gserviceaccount.com",
        "private_key": private_pem,
        "private_key_id": "key-1",
    }
    served = ServedApp(fake.app()).start()
    fake.url = served.url
    yield fake
    served.stop()


@pytest.fixture
def small_server(tmp_path):
    """A server that takes messages of at most 8 kB (and says so in its EHLO answer)."""
    (tmp_path / "small").mkdir()
    server = SmtpServer(
        tmp_path / "small", free_port(), users={"relay": "s3cret-pass"}, size_limit=8_000
    )
    yield server.start()
    server.stop()


def test_a_recipient_greylisted_at_rcpt_is_retried_and_delivered(make_relay, smtp_server):
    """Greylisting defers the first RCPT of a sender/recipient pair with 450, and any retry sooner than its
    delay: a temporary refusal, not a dead letter. Relay waits RELAY_EMAIL_DEFERRED_RETRY_SECONDS (here the
    server's delay, scaled down as both are), and the server takes the message."""
    relay = make_relay(email_deferred_retry_seconds=0.5)
    smtp_server.mailbox.greylist = True
    smtp_server.mailbox.greylist_delay = 0.5
    with relay.client() as client:
        task = relay.submit(client, prompt="x", destinations=[email_destination(smtp_server)])
        [done] = delivered(relay, client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    assert done["attempts"] == 2
    assert len(smtp_server.mailbox.deferred) == 2, "both recipients were deferred once"
    assert smtp_server.mailbox.envelopes == [
        ("relay@example.com", ["ops@example.com", "cfo@example.com"])
    ]


def test_a_recipient_refused_for_good_at_rcpt_is_a_dead_letter_naming_it(relay, smtp_server):
    async def unknown_user(server, session, envelope, address, options):
        if address == "cfo@example.com":
            return "550 5.1.1 <cfo@example.com>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    smtp_server.mailbox.handle_RCPT = unknown_user
    with relay.client() as client:
        task = relay.submit(client, prompt="x", destinations=[email_destination(smtp_server)])
        [dead] = delivered(relay, client, task["task_id"])
    assert dead["state"] == "dead" and dead["attempts"] == 1
    assert "refused the recipients: cfo@example.com (550 5.1.1)" in dead["last_error"]
    assert smtp_server.mailbox.messages == []


def test_a_file_over_the_servers_size_limit_is_sent_as_a_link(relay, small_server):
    """The server announces SIZE 8000; the workbook attached (base64) would be larger. Relay sends the
    message with a link instead, and says its size in MAIL FROM, as RFC 1870 asks."""
    with relay.client() as client:
        task = relay.submit(client, prompt="Sales", destinations=[email_destination(small_server)])
        [done] = delivered(relay, client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    assert "(as a link)" in done["location"]
    [message] = small_server.mailbox.messages
    assert list(message.iter_attachments()) == []
    assert "/files/" in message.get_body(("plain",)).get_content()
    [size] = small_server.mailbox.mail_sizes
    assert size is not None and size <= 8_000


def test_a_small_file_under_the_servers_limit_is_still_attached(make_relay, small_server):
    relay = make_relay()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Memo",
            format="word",
            destinations=[{**email_destination(small_server), "export": "txt"}],
        )
        [done] = delivered(relay, client, task["task_id"])
    assert done["state"] == "delivered" and "(attached)" in done["location"], done
    assert len(list(small_server.mailbox.messages[0].iter_attachments())) == 1


def test_microsoft_365_without_basic_auth_refuses_a_password_and_takes_oauth(
    make_relay, smtp_server, identity
):
    """Microsoft 365 turns basic SMTP AUTH off (by default from the end of December 2026): a password is
    refused with 535 5.7.139, a dead letter that says so and what to use instead. With auth oauth_microsoft,
    Relay gets a token by client credentials for outlook.office365.com and signs in with XOAUTH2."""
    relay = make_relay(graph_login_url=identity.url)
    smtp_server.mailbox.basic_auth = False
    smtp_server.mailbox.oauth = ("microsoft", identity)
    oauth = {
        "auth": "oauth_microsoft",
        "username": MAILBOX,
        "password": None,
        "tenant_id": "contoso.onmicrosoft.com",
        "client_id": "relay-app",
        "client_secret": "app-secret",
    }
    with relay.client() as client:
        refused = relay.submit(client, prompt="x", destinations=[email_destination(smtp_server)])
        [dead] = delivered(relay, client, refused["task_id"])
        signed = relay.submit(
            client, prompt="y", destinations=[email_destination(smtp_server, **oauth)]
        )
        [done] = delivered(relay, client, signed["task_id"])
    assert dead["state"] == "dead" and "5.7.139" in dead["last_error"]
    assert "basic authentication" in dead["last_error"] and "oauth_microsoft" in dead["last_error"]
    assert done["state"] == "delivered", done["last_error"]
    assert smtp_server.mailbox.signed_in == [("XOAUTH2", MAILBOX)]
    assert len(smtp_server.mailbox.messages) == 1


def test_microsoft_oauth_refusals_name_the_cause(make_relay, smtp_server, identity):
    """A wrong client secret (AADSTS7000215) and a mailbox the app may not send as: each a dead letter that
    says which, and never the secret."""
    relay = make_relay(graph_login_url=identity.url)
    smtp_server.mailbox.basic_auth = False
    smtp_server.mailbox.oauth = ("microsoft", identity)
    base = {
        "auth": "oauth_microsoft",
        "password": None,
        "tenant_id": "contoso.onmicrosoft.com",
        "client_id": "relay-app",
    }
    cases = {
        "invalid_client": {**base, "username": MAILBOX, "client_secret": "not-the-secret"},
        "XOAUTH2": {**base, "username": "ceo@contoso.com", "client_secret": "app-secret"},
    }
    with relay.client() as client:
        tasks = {
            said: relay.submit(
                client, prompt="x", destinations=[email_destination(smtp_server, **config)]
            )
            for said, config in cases.items()
        }
        dead = {said: delivered(relay, client, t["task_id"])[0] for said, t in tasks.items()}
    for said, delivery in dead.items():
        assert delivery["state"] == "dead" and said in delivery["last_error"], delivery
        assert "not-the-secret" not in delivery["last_error"]
    assert "ceo@contoso.com" in dead["XOAUTH2"]["last_error"]
    assert smtp_server.mailbox.messages == []


def test_a_token_refused_by_a_server_that_hangs_up_is_still_a_refusal(
    make_relay, smtp_server, identity
):
    """Relay tries a fresh token after a refusal; a server that closed the connection after refusing has
    answered already: a dead letter naming the sign-in, not a connection problem retried eight times."""
    relay = make_relay(graph_login_url=identity.url)
    smtp_server.mailbox.oauth = ("microsoft", identity)
    smtp_server.mailbox.hang_up_after_refusal = True
    config = {
        "auth": "oauth_microsoft",
        "username": "ceo@contoso.com",  # not a mailbox the app may send as
        "password": None,
        "tenant_id": "contoso.onmicrosoft.com",
        "client_id": "relay-app",
        "client_secret": "app-secret",
    }
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[email_destination(smtp_server, **config)]
        )
        [dead] = delivered(relay, client, task["task_id"])
    assert dead["state"] == "dead" and dead["attempts"] == 1, dead
    assert "XOAUTH2 sign-in as ceo@contoso.com (535 5.7.3)" in dead["last_error"]


def test_gmail_signs_in_with_a_delegated_service_account_or_a_refresh_token(
    make_relay, smtp_server, identity
):
    relay = make_relay(drive_token_url=f"{identity.url}/token")
    smtp_server.mailbox.basic_auth = False
    smtp_server.mailbox.oauth = ("google", identity)
    delegated = {
        "auth": "oauth_google",
        "username": "ops@example.com",
        "password": None,
        "google_credentials": identity.service_account,
    }
    user = {
        "auth": "oauth_google",
        "username": "ana@example.com",
        "password": None,
        "google_credentials": {
            "type": "authorized_user",
            "client_id": "client-id.apps",
            "client_secret": "client-secret",
            "refresh_token": "1//mail-refresh",
        },
    }
    with relay.client() as client:
        tasks = [
            relay.submit(
                client, prompt="x", destinations=[email_destination(smtp_server, **config)]
            )
            for config in (delegated, user)
        ]
        done = [delivered(relay, client, t["task_id"])[0] for t in tasks]
    assert [d["state"] for d in done] == ["delivered", "delivered"], done
    assert sorted(smtp_server.mailbox.signed_in) == [
        ("XOAUTH2", "ana@example.com"),
        ("XOAUTH2", "ops@example.com"),
    ]


def test_gmail_refusals_name_the_cause(make_relay, smtp_server, identity):
    """A service account the Workspace admin never delegated the mail scope to: the token endpoint says
    unauthorized_client. A refresh token of another user than the mailbox: Gmail answers XOAUTH2 with its JSON
    challenge, then 535 5.7.8."""
    relay = make_relay(drive_token_url=f"{identity.url}/token")
    identity.delegation.clear()
    smtp_server.mailbox.oauth = ("google", identity)
    undelegated = {
        "auth": "oauth_google",
        "username": "ops@example.com",
        "password": None,
        "google_credentials": identity.service_account,
    }
    other_user = {
        "auth": "oauth_google",
        "username": "bob@example.com",
        "password": None,
        "google_credentials": {
            "type": "authorized_user",
            "client_id": "client-id.apps",
            "client_secret": "client-secret",
            "refresh_token": "1//mail-refresh",
        },
    }
    with relay.client() as client:
        tasks = [
            relay.submit(
                client, prompt="x", destinations=[email_destination(smtp_server, **config)]
            )
            for config in (undelegated, other_user)
        ]
        dead = [delivered(relay, client, t["task_id"])[0] for t in tasks]
    assert [d["state"] for d in dead] == ["dead", "dead"], dead
    assert "unauthorized_client" in dead[0]["last_error"]
    assert "XOAUTH2 sign-in as bob@example.com (535 5.7.8)" in dead[1]["last_error"]
    assert smtp_server.mailbox.messages == []


def test_oauth_secrets_are_sealed_and_never_shown(relay, smtp_server, identity):
    config = email_destination(
        smtp_server,
        auth="oauth_microsoft",
        password=None,
        username=MAILBOX,
        tenant_id="contoso.onmicrosoft.com",
        client_id="relay-app",
        client_secret="app-secret-value",
    )["config"]
    with relay.client() as client:
        saved = client.post(
            "/v1/destinations?check=false",
            json={"name": "m365", "kind": "email", "config": config},
        )
        assert saved.status_code in (200, 201), saved.text
        shown = client.get(f"/v1/destinations/{saved.json()['id']}").json()
        missing = client.post(
            "/v1/destinations?check=false",
            json={
                "name": "m365",
                "kind": "email",
                "config": {k: v for k, v in config.items() if k != "client_secret"},
            },
        )
    assert "app-secret-value" not in str(shown)
    assert shown["config"]["client_secret"] == "********"
    raw = relay.ctx.redis.hgetall(relay.ctx.destinations.key_for(relay.tenant_id))
    assert "app-secret-value" not in str(raw), "sealed at rest"
    assert missing.status_code == 400


# -- the check a destination gets when it is saved -------------------------------------------------------


def _report(relay, config: dict):
    return checks.run(relay.ctx, relay.tenant_id, "email", config)


def test_the_check_signs_in_and_reads_the_size_limit(make_relay, smtp_server, small_server):
    relay = make_relay(worker=False)
    good = _report(relay, email_destination(smtp_server)["config"])
    small = _report(relay, email_destination(small_server)["config"])
    wrong = _report(relay, email_destination(smtp_server, password="wrong")["config"])
    assert good.verdict is Verdict.PASS, good.view()
    assert [c.name for c in good.checks][:2] == ["connects", "signs in"]
    assert small.verdict is Verdict.WARNING, small.view()
    [size] = [c for c in small.checks if c.verdict is Verdict.WARNING]
    assert "8 kB" in size.message and "link" in size.message
    assert wrong.verdict is Verdict.FAILURE
    [failed] = [c for c in wrong.checks if c.verdict is Verdict.FAILURE]
    assert failed.name == "signs in" and "535" in failed.message and failed.fix
    assert smtp_server.mailbox.messages == [] and small_server.mailbox.messages == []


def test_the_check_warns_a_password_for_microsoft_365_and_fails_when_basic_auth_is_off(
    make_relay, tmp_path, identity, monkeypatch
):
    """smtp.office365.com with a password: a warning that Microsoft turns basic auth off at the end of
    December 2026; once it is off, a failure whose fix is OAuth; with OAuth, a pass."""
    relay = make_relay(worker=False, graph_login_url=identity.url)
    (tmp_path / "office").mkdir()
    office = SmtpServer(
        tmp_path / "office", free_port(), {"relay": "s3cret-pass"}, names=("smtp.office365.com",)
    ).start()
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        # smtp.office365.com, as this test's resolver answers it: the fake on loopback
        return real("127.0.0.1" if host == "smtp.office365.com" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    try:
        config = email_destination(office, host="smtp.office365.com")["config"]
        warned = _report(relay, config)
        office.mailbox.basic_auth = False
        office.mailbox.oauth = ("microsoft", identity)
        refused = _report(relay, config)
        oauth = {
            "auth": "oauth_microsoft",
            "username": MAILBOX,
            "tenant_id": "contoso.onmicrosoft.com",
            "client_id": "relay-app",
            "client_secret": "app-secret",
        }
        config = {k: v for k, v in config.items() if k != "password"} | oauth
        passed = _report(relay, config)
    finally:
        office.stop()
    assert warned.verdict is Verdict.WARNING, warned.view()
    [warning] = [c for c in warned.checks if c.verdict is Verdict.WARNING]
    assert "December 2026" in warning.message and "oauth_microsoft" in warning.fix
    assert refused.verdict is Verdict.FAILURE
    [failure] = [c for c in refused.checks if c.verdict is Verdict.FAILURE]
    assert "basic authentication" in failure.message and "oauth_microsoft" in failure.fix
    assert passed.verdict is Verdict.PASS, passed.view()


def test_a_message_too_large_even_with_a_link_is_a_dead_letter_saying_so(relay, tmp_path):
    """A server whose limit even the words and the link exceed refuses MAIL FROM ... SIZE= with 552."""
    (tmp_path / "tiny").mkdir()
    tiny = SmtpServer(tmp_path / "tiny", free_port(), {"relay": "s3cret-pass"}, size_limit=300)
    tiny.start()
    try:
        with relay.client() as client:
            task = relay.submit(client, prompt="x", destinations=[email_destination(tiny)])
            [dead] = delivered(relay, client, task["task_id"])
    finally:
        tiny.stop()
    assert dead["state"] == "dead" and "too large (552" in dead["last_error"], dead
    assert tiny.mailbox.messages == []


def test_the_operators_ca_file_is_trusted_for_smtp_too(make_relay, smtp_server):
    """RELAY_OUTBOUND_CA_FILE (a private CA, a TLS-inspecting gateway) is trusted by every destination: an
    email destination without its own ca_pem reaches a server whose certificate that CA signed."""
    relay = make_relay(outbound_ca_file=str(smtp_server.cert))
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[email_destination(smtp_server, ca_pem=None)]
        )
        [done] = delivered(relay, client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]


def test_microsoft_365s_connection_limit_holds_a_delivery_back_without_spending_attempts(
    make_relay, smtp_server
):
    """Microsoft 365 takes 3 connections per mailbox at once and refuses a fourth's MAIL FROM with 432 4.3.2
    (another app, or Relay's other workers, hold the three). Relay waits and tries again without spending one
    of the delivery's attempts, and delivers once a connection is free."""
    import smtplib
    import ssl

    relay = make_relay(email_deferred_retry_seconds=0.5)
    smtp_server.mailbox.sessions_per_mailbox = 3
    context = ssl.create_default_context(cafile=str(smtp_server.cert))
    others = []
    for _ in range(3):  # the mailbox's other senders, each in the middle of its own work
        other = smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=30)
        other.starttls(context=context)
        other.login("relay", "s3cret-pass")
        others.append(other)
    with relay.client() as client:
        task = relay.submit(client, prompt="x", destinations=[email_destination(smtp_server)])
        eventually(lambda: smtp_server.mailbox.thread_limited, 60, "a fourth connection refused")
        for other in others:
            other.quit()
        [done] = delivered(relay, client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    assert done["attempts"] == 1, "the refusals spent no attempt"
    assert len(smtp_server.mailbox.messages) == 1


def test_the_check_signs_in_to_gmail_with_oauth_or_says_what_to_grant(
    make_relay, smtp_server, identity
):
    relay = make_relay(worker=False, drive_token_url=f"{identity.url}/token")
    smtp_server.mailbox.basic_auth = False
    smtp_server.mailbox.oauth = ("google", identity)
    config = email_destination(
        smtp_server,
        auth="oauth_google",
        username="ops@example.com",
        password=None,
        google_credentials=identity.service_account,
    )["config"]
    passed = _report(relay, config)
    identity.delegation.clear()
    refused = _report(relay, {**config, "username": "ana@example.com"})  # not a kept token
    assert passed.verdict is Verdict.PASS, passed.view()
    assert "signed in as ops@example.com with XOAUTH2" in passed.checks[1].message
    [failure] = [c for c in refused.checks if c.verdict is Verdict.FAILURE]
    assert failure.name == "signs in" and "unauthorized_client" in failure.message
    assert "domain-wide delegation" in failure.fix and "https://mail.google.com/" in failure.fix


def test_the_check_warns_of_a_greylisting_server_and_fails_an_unknown_recipient(
    make_relay, smtp_server
):
    relay = make_relay(worker=False)
    smtp_server.mailbox.greylist = True
    greylisted = _report(relay, email_destination(smtp_server)["config"])
    smtp_server.mailbox.greylist = False

    async def unknown_user(server, session, envelope, address, options):
        if address == "cfo@example.com":
            return "550 5.1.1 <cfo@example.com>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    smtp_server.mailbox.handle_RCPT = unknown_user
    unknown = _report(relay, email_destination(smtp_server)["config"])
    [warning] = [c for c in greylisted.checks if c.verdict is Verdict.WARNING]
    assert warning.name == "sender and recipients" and "(450 4.2.0)" in warning.message
    [failure] = [c for c in unknown.checks if c.verdict is Verdict.FAILURE]
    assert "cfo@example.com (550 5.1.1)" in failure.message and failure.fix
    assert smtp_server.mailbox.messages == []


def test_microsoft_365s_daily_recipient_limit_is_a_dead_letter_that_says_so(relay, smtp_server):
    """Past 10,000 recipients a day, Exchange Online refuses each message with 554 5.2.0
    (SubmissionQuotaExceededException) for a day: the dead letter names the limit and when to replay."""
    smtp_server.mailbox.recipients_per_day = 2  # the fake's scaled-down 10,000
    with relay.client() as client:
        first = relay.submit(client, prompt="x", destinations=[email_destination(smtp_server)])
        [sent] = delivered(relay, client, first["task_id"])
        second = relay.submit(client, prompt="y", destinations=[email_destination(smtp_server)])
        [dead] = delivered(relay, client, second["task_id"])
    assert sent["state"] == "delivered", sent["last_error"]
    assert dead["state"] == "dead" and "554 5.2.0" in dead["last_error"], dead
    assert "daily" in dead["last_error"] and "replay" in dead["last_error"]
    assert len(smtp_server.mailbox.messages) == 1
