"""Bearer links never reach a log: requests that carry a token in their path or query, sent to `relay web`
(gunicorn, as deployed and as `relay dev` runs it), leave none of it in the access log or any other line."""

from __future__ import annotations

import json

import httpx

from app.core.logs import redact
from tests.relay.test_operations import gunicorn_stack  # noqa: F401  # the fixture
from tests.support.servers import eventually


def test_tokens_in_paths_and_queries_never_reach_the_logs(gunicorn_stack):  # noqa: F811
    relay, url, folder = gunicorn_stack
    tokens = relay.ctx.tokens
    file_link = tokens.file({"t": "tsk_01JZZZZZZZZZZZZZZZZZZZZZZZ"})
    install_link = tokens.signed("slack-install", {"t": relay.tenant_id})
    oauth_state = tokens.signed("slack-oauth-state", {"t": relay.tenant_id, "n": "nonce"})
    webhook = tokens.webhook(relay.tenant_id, "tsk_01JZZZZZZZZZZZZZZZZZZZZZZZ")
    oauth_code = "7361.slack-oauth-code-ab12cd34"
    secrets = [file_link, install_link, oauth_state, webhook, oauth_code]
    with httpx.Client(base_url=url, timeout=30) as client:
        answered = [
            client.get(f"/files/{file_link}").status_code,
            client.get(f"/v1/files/{file_link}?download=1").status_code,
            client.get("/slack/install", params={"link": install_link}).status_code,
            client.get(
                "/slack/oauth/callback", params={"code": oauth_code, "state": oauth_state}
            ).status_code,
            client.post(
                f"/webhooks/upstream/{webhook}",
                content=b"{}",
                headers={"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1,A"},
            ).status_code,
        ]
    assert all(status < 500 for status in answered), answered
    log = folder / "web.log"
    # the access log line of the last request is written once it is answered
    eventually(lambda: "/webhooks/upstream/" in log.read_text(), 30, "the access log lines")
    text = log.read_text() + (folder / "worker.log").read_text()
    for secret in secrets:
        assert secret not in text, f"a bearer token is in the log: {secret[:12]}..."
        # nor any long piece of it (a token cut in two by an encoding)
        assert secret[-20:] not in text
    whole = log.read_text().rpartition("\n")[0]  # a line being written as it is read is left out
    lines = [json.loads(line) for line in whole.splitlines() if line.strip()]
    access = [line["message"] for line in lines if line["logger"] == "gunicorn.access"]
    assert any("/files/[redacted]" in message for message in access), access
    assert any("link=[redacted]" in message for message in access), access
    assert any("/webhooks/upstream/[redacted]" in message for message in access), access


def test_redaction_masks_every_token_shape_and_keeps_the_rest():
    line = (
        'GET /v1/tasks?limit=10&cursor=17 HTTP/1.1 "GET /files/eyJ0IjoidHNrX3gifQ.Z1x2Aw.'
        'b2Q5dHlwaWNhbF9zaWduYXR1cmVfaGVy HTTP/1.1" https://s3.example/x.xlsx?X-Amz-Signature=abcdef'
        "0123&X-Amz-Credential=AKIA/2026 /slack/oauth/callback?code=1234.5678&state=abc"
    )
    masked = redact(line)
    assert "limit=10&cursor=17" in masked, "what is no token stays"
    assert "/files/[redacted]" in masked and "b2Q5dHlw" not in masked
    assert "X-Amz-Signature=[redacted]" in masked and "X-Amz-Credential=[redacted]" in masked
    assert "code=[redacted]" in masked and "state=[redacted]" in masked
