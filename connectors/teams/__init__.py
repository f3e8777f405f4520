"""Microsoft Teams, through a Workflows webhook ("When a Teams webhook request is received"): an Adaptive
Card with the document's title, summary, record and format, and an Open button on the relay's file link.

- **Accepted, not delivered**: the trigger answers 202 to any request it takes and the flow posts the card
  later; a card Teams refuses (too large, malformed, a deleted channel, a flow whose owner left) fails inside
  the flow's run, which the caller never sees. So a 202 is recorded as ``accepted``: the card's own run
  history (in Power Automate) says whether it appeared.
- **Size**: Teams' message limit is about 28 KB, and nothing says when a card is over it, so the card is kept
  under ``MAX_BYTES`` (20 KB; a client library measured the real limit near 21 KB) by shortening the summary
  and pointing to the file for the rest.
- **Who can trigger the flow**: a URL with a ``sig`` is an *Anyone* trigger; one without needs an Entra
  token for the flow service, which the relay does not get: its 401 says to set the trigger to *Anyone*.
- **Pace**: about 4 requests a second per workflow (429 with Retry-After past it): each POST takes a slot of
  3.5 a second, shared by every worker, and a 429 waits for its Retry-After without spending an attempt.

Like Slack, Teams cannot be asked whether a message already went out: a worker killed between sending and
recording may post the card twice."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx

from ..base import (
    Check,
    Delivery,
    Document,
    Environment,
    Outcome,
    Pace,
    Permanent,
    Retryable,
    Throttled,
    classify_status,
    digest,
    headline,
    summary,
)
from ..retry_after import retry_after

MAX_BYTES = 20 * 1024
"""The card's most bytes: under Teams' 28 KB with room, because an oversized card fails unseen."""
PER_SECOND = 3.5
"""Teams takes about 4 requests a second per workflow: 3.5, so that a late wake-up never puts a fifth in one."""
_CARD = "application/vnd.microsoft.card.adaptive"
_WHO = "the Teams workflow"


def pace_of(url: str) -> Pace:
    return Pace(
        f"teams:{digest(url)}",
        per_second=PER_SECOND,
        what="Teams' 4 requests a second per workflow",
    )


class TeamsKind:
    name = "teams"
    needs_document = True

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        return None

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        from .check import check

        return check(target.config.get("url") or "", env)

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        url = delivery.config["url"]
        body = message(delivery, document)  # no document: an alert, words only
        headers = {"content-type": "application/json", "user-agent": "overten-relay/0.1"}
        env.pace(pace_of(url))
        try:
            with env.http() as client:
                response = client.post(url, content=body.encode(), headers=headers)
        except httpx.TransportError as exc:
            raise Retryable(f"{_WHO} could not be reached: {type(exc).__name__}") from None
        where, status = url.split("?")[0], response.status_code
        if status == 202:  # taken: the flow's run posts the card, or fails, unseen
            return Outcome(f"teams: {where} accepted the card (202)", accepted=True)
        if 200 <= status < 300:
            return Outcome(f"teams: {where} answered {status}")
        raise _refusal(url, response)


def _refusal(url: str, response: httpx.Response) -> Exception:
    status = response.status_code
    if status == 429:
        return Throttled(
            f"{_WHO} answered 429", retry_after=retry_after(response.headers.get("retry-after"))
        )
    if status == 401 and not signed(url):
        return Permanent(
            f"{_WHO} answered 401: its trigger takes only callers signed in to your organisation. In "
            "the flow's trigger, set 'Who can trigger the flow' to 'Anyone', save, and use the new "
            "URL (it has a sig= parameter)"
        )
    if status == 401:
        return Permanent(
            f"{_WHO} answered 401: it refused the URL's signature; copy the trigger's HTTP URL again "
            "(it changes when the trigger is changed)"
        )
    return classify_status(status, response.headers.get("retry-after"), _WHO)


def signed(url: str) -> bool:
    """The URL carries a SAS signature: the trigger is set to *Anyone*."""
    return bool(parse_qs(urlsplit(url).query).get("sig", [""])[0])


def message(delivery: Delivery, document: Document | None) -> str:
    """The card as JSON, its summary shortened until the whole message fits in MAX_BYTES (in UTF-8: a
    character of a CJK script is 3 bytes), with a word that the file has the rest."""
    task = delivery.event.get("data") or {}
    text, whole = summary(delivery.event), True
    while True:
        body = json.dumps(_card(delivery, document, task, text, whole), ensure_ascii=False)
        size = len(body.encode())
        if size <= MAX_BYTES or not text:
            return body
        # cut in bytes, not characters: one CJK character is 3 of them
        keep = max(0, len(text.encode()) - (size - MAX_BYTES) - 16)
        text = text.encode()[:keep].decode(errors="ignore").rstrip() + "…"
        text, whole = ("" if text == "…" else text), False


def _card(
    delivery: Delivery, document: Document | None, task: dict, text: str, whole: bool = True
) -> dict:
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
    if not whole and document is not None:  # the Open button leads to all of it
        shortened = "The summary was shortened: the file has all of it."
        content["body"].append(
            {"type": "TextBlock", "text": shortened, "isSubtle": True, "wrap": True}
        )
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
