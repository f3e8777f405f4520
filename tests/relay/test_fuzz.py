"""Property-based fuzzing (hypothesis) of the entry points strangers can reach: the webhook intake (with
and without valid signatures) and the Slack command endpoint (validly signed, arbitrary forms). Whatever
arrives, the answer is never a 5xx, and every error is a JSON body with a message naming the problem."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier
from standardwebhooks import Webhook

FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
SIGNING_SECRET = "fuzzing-signing-secret"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture
def target(make_relay):
    relay = make_relay(worker=False, slack_signing_secret=SIGNING_SECRET)
    relay.http = httpx.Client(base_url=relay.url, timeout=10)  # type: ignore[attr-defined]
    return relay


def assert_clear(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/json", answer.text
        error = answer.json()["error"]
        assert error["code"] and error["message"]


def test_intake_with_arbitrary_bodies_and_headers(target, reliability):
    url = "/webhooks/upstream/" + target.ctx.tokens.webhook(target.tenant_id, "tsk_fuzz")

    # printable, no spaces
    header = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=120)

    @FUZZ
    @given(
        body=st.binary(max_size=2000),
        webhook_id=header,
        stamp=header | st.integers().map(str),
        signature=header | header.map(lambda s: "v1," + s),
    )
    def unsigned(body, webhook_id, stamp, signature):
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": stamp,
            "webhook-signature": signature,
        }
        assert_clear(target.http.post(url, content=body, headers=headers))

    @FUZZ
    @given(
        event=json_values
        | st.fixed_dictionaries({"type": st.text(), "id": st.text(), "data": json_values})
    )
    def signed(event):
        body, webhook_id, stamp = (
            json.dumps(event),
            f"msg_fuzz_{time.monotonic_ns()}",
            datetime.now(UTC),
        )
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(target.sandbox.webhook_secret).sign(
                webhook_id, stamp, body
            ),
        }
        answer = target.http.post(url, content=body, headers=headers)
        assert_clear(answer)
        if answer.status_code == 400:
            assert "not a task event" in answer.json()["error"]["message"]

    unsigned()
    signed()
    reliability(
        fault="fuzzed webhooks: arbitrary bodies and signature headers, and validly signed arbitrary JSON",
        tried=2 * FUZZ.max_examples,
        lost=0,
        duplicated="-",
        notes="no 5xx; every error JSON with a message",
    )


def test_slack_commands_with_arbitrary_signed_forms(target, reliability):
    @FUZZ
    @given(
        form=st.dictionaries(
            st.sampled_from(
                [
                    "team_id",
                    "channel_id",
                    "user_id",
                    "command",
                    "text",
                    "response_url",
                    "trigger_id",
                    "extra",
                ]
            ),
            st.text(max_size=60),
            max_size=8,
        )
    )
    def signed(form):
        body = urlencode(form)
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": SignatureVerifier(SIGNING_SECRET).generate_signature(
                timestamp=stamp, body=body
            ),
        }
        answer = target.http.post("/slack/commands", content=body, headers=headers)
        assert_clear(answer)
        if answer.status_code == 400:
            assert answer.json()["error"]["field"]

    signed()
    reliability(
        fault="fuzzed Slack commands: validly signed, arbitrary form fields",
        tried=FUZZ.max_examples,
        lost=0,
        duplicated="-",
        notes="no 5xx; 400s name the field",
    )
