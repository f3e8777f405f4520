"""Microsoft Teams, through a Workflows webhook ("When a Teams webhook request is received"): an Adaptive
Card with the document's title, summary, record and format, and an Open button on the relay's file link.

The message is kept under Teams' 28 KB limit by shortening the summary. Teams allows about 4 requests/s per
webhook and answers 429 with Retry-After past it, which the relay's retries honour. Like Slack, Teams
cannot be asked whether a message already went out: a worker killed between sending and recording may post
the card twice."""

from __future__ import annotations

import json

from ..base import Delivery, Document, Environment, Outcome, Pace, digest, headline, summary
from ..webhook import post

MAX_BYTES = 28 * 1024
_CARD = "application/vnd.microsoft.card.adaptive"


class TeamsKind:
    name = "teams"
    needs_document = True

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        return None

    def pace(self, delivery: Delivery) -> Pace:
        """Teams takes about 4 requests a second per workflow webhook: 3.5, so that a late wake-up or a clock's
        jitter never puts a fifth in one second."""
        return Pace(f"teams:{digest(delivery.config['url'])}", per_second=3.5)

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        body = message(delivery, document)  # no document: an alert, words only
        headers = {"content-type": "application/json", "user-agent": "overten-relay/0.1"}
        outcome = post(delivery.config["url"], body, headers, env, "the Teams workflow")
        return Outcome(f"teams: {outcome.location}")


def message(delivery: Delivery, document: Document | None) -> str:
    """The card as JSON, its summary shortened until the whole message fits in MAX_BYTES."""
    task = delivery.event.get("data") or {}
    text = summary(delivery.event)
    while True:
        body = json.dumps(_card(delivery, document, task, text), ensure_ascii=False)
        if len(body.encode()) <= MAX_BYTES or not text:
            return body
        text = text[: max(0, len(text) - (len(body.encode()) - MAX_BYTES) - 16)].rstrip() + "…"
        text = "" if text == "…" else text


def _card(delivery: Delivery, document: Document | None, task: dict, text: str) -> dict:
    facts = [
        {"title": "Record", "value": task.get("record_key") or "-"},
        {"title": "Format", "value": task.get("format") or "-"},
    ]
    content = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {
                "type": "TextBlock",
                "text": delivery.config.get("title") or headline(delivery.event),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "TextBlock", "text": text, "wrap": True},
        ],
    }
    if document is not None:
        content["body"].append(
            {"type": "FactSet", "facts": [*facts, {"title": "File", "value": document.name}]}
        )
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": document.link}]
    return {
        "type": "message",
        "attachments": [{"contentType": _CARD, "contentUrl": None, "content": content}],
    }


KIND = TeamsKind()
