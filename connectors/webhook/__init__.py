"""Webhook subscribers: the event POSTed as JSON, signed per Standard Webhooks with the subscription's
own secret. The webhook-id is the delivery id, so a receiver can drop a repeat; a 410 ends the
subscription."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from ..base import Delivery, Document, Environment, Outcome, Retryable, classify_status


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
