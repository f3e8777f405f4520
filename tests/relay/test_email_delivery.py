"""Email destination against a real SMTP conversation (aiosmtpd, STARTTLS, AUTH)."""

from __future__ import annotations

import httpx

from tests.relay.test_deliveries import delivered


def email_destination(smtp_server, **overrides) -> dict:
    config = {
        "to": ["ops@example.com", "cfo@example.com"],
        "from": "relay@example.com",
        "host": "127.0.0.1",
        "port": smtp_server.port,
        "security": "starttls",
        "username": "relay",
        "password": "s3cret-pass",
        "ca_pem": smtp_server.cert.read_text(),
        **overrides,
    }
    # None: the field left out
    return {"kind": "email", "config": {k: v for k, v in config.items() if v is not None}}


def test_small_file_is_attached_byte_for_byte(relay, smtp_server):
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Sales by region",
            record_key="deal:5",
            destinations=[email_destination(smtp_server)],
        )
        [done] = delivered(relay, client, task["task_id"])
        finished = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert done["state"] == "delivered", done["last_error"]
    [message] = smtp_server.mailbox.messages
    assert smtp_server.mailbox.envelopes == [
        ("relay@example.com", ["ops@example.com", "cfo@example.com"])
    ]
    assert message["Message-ID"] == f"<{done['delivery_id'].lower()}@overten-relay>"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename().startswith("deal-5-workbook-")
    assert attachment.get_content() == httpx.get(finished["result"]["download_url"]).content
    assert finished["result"]["summary"] in message.get_body(("plain",)).get_content()


def test_large_file_is_sent_as_a_link_that_downloads_it(make_relay, smtp_server):
    relay = make_relay(email_attach_max_bytes=1000)
    with relay.client() as client:
        task = relay.submit(client, prompt="Big", destinations=[email_destination(smtp_server)])
        [done] = delivered(relay, client, task["task_id"])
    [message] = smtp_server.mailbox.messages
    assert list(message.iter_attachments()) == [] and "(as a link)" in done["location"]
    text = message.get_body(("plain",)).get_content()
    link = next(word for word in text.split() if "/files/" in word)
    assert httpx.get(link, follow_redirects=True).content.startswith(b"PK"), (
        "the link leads to the workbook"
    )


def test_an_export_is_attached_instead_of_the_document(relay, smtp_server):
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Memo",
            format="word",
            destinations=[{**email_destination(smtp_server), "export": "txt"}],
        )
        [done] = delivered(relay, client, task["task_id"])
    [attachment] = list(smtp_server.mailbox.messages[0].iter_attachments())
    assert done["export"] == "txt" and attachment.get_filename().endswith(".txt")
    assert "Memo" in attachment.get_content()


def test_wrong_login_or_untrusted_certificate_is_permanent(relay, smtp_server):
    # what the error says: the fault
    cases = {
        "refused the login": {"password": "wrong"},
        "TLS": {"ca_pem": None},
    }
    with relay.client() as client:
        tasks = {
            said: relay.submit(
                client, prompt="x", destinations=[email_destination(smtp_server, **overrides)]
            )
            for said, overrides in cases.items()
        }
        dead = {said: delivered(relay, client, task["task_id"])[0] for said, task in tasks.items()}
    for said, delivery in dead.items():
        assert delivery["state"] == "dead" and said in delivery["last_error"], delivery
    assert smtp_server.mailbox.messages == []


def test_temporary_refusal_is_retried_and_a_fixed_saved_destination_replays(relay, smtp_server):
    smtp_server.mailbox.refuse_next = ["451 4.3.0 Try again later"]
    with relay.client() as client:
        retried = relay.submit(client, prompt="x", destinations=[email_destination(smtp_server)])
        [done] = delivered(relay, client, retried["task_id"])
        assert done["state"] == "delivered" and done["attempts"] == 2
        config = email_destination(smtp_server, password="old")["config"]
        body = {"name": "ops", "kind": "email", "config": config}
        refused = client.post("/v1/destinations", json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "destination_check_failed"
        assert "refused the login" in refused.json()["error"]["message"]
        # saved anyway (the mail admin will put the password back): its deliveries die until then
        saved = client.post("/v1/destinations?check=false", json=body)
        failed = relay.submit(client, prompt="y", destinations=[{"id": saved.json()["id"]}])
        [dead] = delivered(relay, client, failed["task_id"])
        assert dead["state"] == "dead"
        smtp_server.mailbox.users["relay"] = "old"  # the mail admin puts the old password back
        client.post(f"/v1/deliveries/{dead['delivery_id']}/replay").raise_for_status()
        [replayed] = delivered(relay, client, failed["task_id"])
    assert replayed["state"] == "delivered" and len(smtp_server.mailbox.messages) == 2


def test_a_path_on_the_worker_is_never_read_nor_said_to_exist(relay, smtp_server, tmp_path):
    """``ca_file`` named a file on the worker: its answers told a tenant which paths exist. The certificate
    comes as PEM text (``ca_pem``, above); a path is refused at the door, and one saved before is never
    opened, whether or not it exists."""
    here, nowhere = smtp_server.cert, tmp_path / "no-such-file.pem"
    with relay.client() as client:
        answers = [
            client.post(
                "/v1/documents",
                json={
                    "format": "excel",
                    "prompt": "x",
                    "destinations": [email_destination(smtp_server, ca_file=str(path))],
                },
            )
            for path in (here, nowhere)
        ]
        not_pem = client.post(
            "/v1/documents",
            json={
                "format": "excel",
                "prompt": "x",
                "destinations": [email_destination(smtp_server, ca_pem=str(here))],
            },
        )
        assert [a.status_code for a in answers] == [400, 400], [a.text for a in answers]
        assert answers[0].json()["error"]["field"] == "destinations.0.config.ca_file"
        assert answers[0].json()["error"] == answers[1].json()["error"], "the same refusal"
        assert not_pem.status_code == 400
        assert not_pem.json()["error"]["field"] == "destinations.0.config.ca_pem"
        # a destination saved with a path before this change: its deliveries die the same way
        tasks = []
        for path in (here, nowhere):
            config = email_destination(smtp_server, ca_file=str(path), ca_pem=None)["config"]
            saved = relay.ctx.destinations.create(relay.tenant_id, "old", "email", config, None)
            tasks.append(relay.submit(client, prompt="x", destinations=[{"id": saved.id}]))
        dead = [delivered(relay, client, task["task_id"])[0] for task in tasks]
        assert [d["state"] for d in dead] == ["dead", "dead"]
        assert dead[0]["last_error"] == dead[1]["last_error"] and "ca_pem" in dead[0]["last_error"]
        assert smtp_server.mailbox.messages == []
        # the tenant gives the PEM text instead: the path is dropped, and a replay delivers
        changed = client.patch(
            f"/v1/destinations/{saved.id}", json={"config": {"ca_pem": here.read_text()}}
        )
        assert changed.status_code == 200 and "ca_file" not in changed.json()["config"], (
            changed.text
        )
        client.post(f"/v1/deliveries/{dead[1]['delivery_id']}/replay").raise_for_status()
        [replayed] = delivered(relay, client, tasks[1]["task_id"])
    assert replayed["state"] == "delivered", replayed["last_error"]
