"""Callback URLs from a submit (Zapier's callback, n8n's and Activepieces' resume URLs): one POST with the
finished task as JSON, with the headers the caller asked for (header auth)."""

from __future__ import annotations

import json

from ..base import Delivery, Document, Environment, Outcome
from ..webhook import post


class CallbackKind:
    name = "callback"
    needs_document = False

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        return None

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        headers = {
            "content-type": "application/json",
            "user-agent": "overten-relay/0.1",
            "idempotency-key": delivery.delivery_id,
            **delivery.config.get("headers", {}),
        }
        return post(
            delivery.config["url"],
            json.dumps(delivery.event["data"]),
            headers,
            env,
            "the callback URL",
        )


KIND = CallbackKind()
