"""The check of a Teams destination when it is saved: no card is posted (the trigger would run the flow and
post it), so the URL itself is read: a Workflows trigger's, signed (an *Anyone* trigger), to a host the
outbound policy lets the relay reach."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..base import Check, DeliveryError, Environment, Verdict
from . import signed

_TRIGGER = re.compile(
    r"(/powerautomate/automations/direct)?/workflows/[^/]+/triggers/[^/]+/paths/invoke"
)
_RETIRED = ("webhook.office.com", "outlook.office.com")
"""Office 365 connectors' incoming webhooks: no new ones since August 2024, being retired."""


def check(url: str, env: Environment) -> list[Check]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if any(host == h or host.endswith("." + h) for h in _RETIRED):
        return [
            Check(
                "a Workflows trigger URL",
                Verdict.FAILURE,
                "This is an Office 365 connector's incoming webhook, which Microsoft is retiring.",
                "In the Teams channel, add the Workflows template 'Post to a channel when a webhook "
                "request is received' and use its URL.",
            )
        ]
    if not _TRIGGER.fullmatch(parts.path):
        return [
            Check(
                "a Workflows trigger URL",
                Verdict.FAILURE,
                "The URL is not a Workflows trigger's (…/workflows/<id>/triggers/manual/paths/invoke).",
                "Copy the HTTP URL the flow's trigger 'When a Teams webhook request is received' shows.",
            )
        ]
    checks = [Check("a Workflows trigger URL", Verdict.PASS, "The URL is a Workflows trigger's.")]
    if signed(url):
        checks.append(
            Check(
                "anyone with the URL may trigger the flow",
                Verdict.PASS,
                "The URL carries its signature (sig).",
            )
        )
    else:
        checks.append(
            Check(
                "anyone with the URL may trigger the flow",
                Verdict.FAILURE,
                "The URL has no signature (sig): the trigger takes only callers signed in to your "
                "organisation (the default for new flows), and the relay does not sign in to Teams.",
                "In the flow's trigger, set 'Who can trigger the flow' to 'Anyone', save, and use "
                "the new URL.",
            )
        )
    try:
        env.settings["check_url"](url)
    except DeliveryError as exc:
        checks.append(
            Check(
                "the relay may reach the host",
                Verdict.FAILURE,
                f"The outbound policy refuses it: {exc.message}",
                "Use the trigger's own URL, or have the operator allow the host (RELAY_OUTBOUND_ALLOW).",
            )
        )
    else:
        checks.append(
            Check("the relay may reach the host", Verdict.PASS, f"{host} is allowed and resolves.")
        )
    checks.append(
        Check(
            "what a delivery will say",
            Verdict.PASS,
            "Teams answers 202 to every card it takes and posts it later: a card it cannot post fails "
            "inside the flow's run, unseen by the relay, so deliveries say 'accepted', not "
            "'delivered'.",
            "Turn on the flow's failure notifications, or look at its run history, to see cards that "
            "did not appear.",
        )
    )
    return checks
