"""Webhook subscribers: the event POSTed as JSON, signed per Standard Webhooks with the subscription's
own secret. The webhook-id is the delivery id, so a receiver can drop a repeat; a 410 ends the
subscription."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from ..base import (
    Check,
    Delivery,
    DeliveryError,
    Document,
    Environment,
    Outcome,
    Retryable,
    Verdict,
    classify_status,
)


class WebhookKind:
    name = "webhook"
    needs_document = False

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        return None

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        body = json.dumps(delivery.event)
        stamp = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "overten-relay/0.1",
            "webhook-id": delivery.delivery_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(delivery.config["secret"]).sign(
                delivery.delivery_id, stamp, body
            ),
        }
        return post(delivery.config["url"], body, headers, env, "the subscriber")

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        return check_url(target.config["url"], env, "the receiver")


def check_url(url: str, env: Environment, who: str) -> list[Check]:
    """The URL is one the relay may send to, and something answers there: a HEAD request, which sends no
    event (any answer but a 5xx shows a receiver; what it does with a POST is up to it)."""
    shown = url.split("?")[0]
    try:
        env.settings["check_url"](url)
    except DeliveryError as exc:
        fix = "Use a public URL, or ask the operator to allow its host (RELAY_OUTBOUND_ALLOW)."
        return [Check("the address may be reached", Verdict.FAILURE, exc.message, fix)]
    allowed = Check("the address may be reached", Verdict.PASS, f"{shown} is a public address")
    try:
        with env.http(timeout=10.0) as client:
            status = client.head(url, headers={"user-agent": "overten-relay/0.1"}).status_code
    except httpx.TransportError as exc:
        return [
            allowed,
            Check(
                f"{who} answers",
                Verdict.FAILURE,
                f"{who} could not be reached: {type(exc).__name__}",
                "Check the URL, and that the receiver is up and reachable from the relay.",
            ),
        ]
    if status >= 500:
        found = Check(
            f"{who} answers",
            Verdict.WARNING,
            f"{who} answered {status} to a HEAD request",
            "Deliveries are retried on 5xx; check that the receiver is healthy.",
        )
    else:
        found = Check(f"{who} answers", Verdict.PASS, f"{who} answered {status}")
    return [allowed, found]


def post(url: str, body: str, headers: dict[str, str], env: Environment, who: str) -> Outcome:
    try:
        with env.http() as client:
            response = client.post(url, content=body.encode(), headers=headers)
    except httpx.TransportError as exc:
        raise Retryable(f"{who} could not be reached: {type(exc).__name__}") from None
    if 200 <= response.status_code < 300:
        return Outcome(f"{url.split('?')[0]} answered {response.status_code}")
    raise classify_status(response.status_code, response.headers.get("retry-after"), who)


KIND = WebhookKind()
