"""Airtable: the document's status, link, version and credits written to fields of the row it belongs to,
and the finished file added to an attachment field by URL, in one PATCH.

Through ``pyairtable`` (pointed at ``airtable_api_url``), with a personal access token. Record keys:
``airtable:{base}/{table}/{record}`` (the table by name or id).

Airtable fetches an attachment from its URL after the write, from the internet, so the relay's public URL
must be reachable from there for the file to land: when it is a private or loopback address the file is
not attached (the outcome says so) and the other fields are written. The attachment's file name names the
task, and the row is read first, so a repeated attempt attaches once. Under ``replace`` the field holds
only the newest file; under ``keep`` the earlier ones stay.

Limits (docs/platforms.md, "Airtable"): 5 requests a second per base and 50 per token, from all clients;
each request waits for a slot of both schedules, shared by every worker (``env.pace``), at a share of the
limit that leaves room for a request that goes a little after its slot. After a 429, the 30 s of quiet
Airtable asks for, costing no attempt (``Throttled``). Free and Team workspaces also have monthly calls
(1,000 and 100,000): a Free workspace past them is refused until the month ends, which is said in words
(``Permanent``); a Team one is cut to 2 requests a second, which the 429s and their waits absorb."""

from __future__ import annotations

import re
from typing import Any

from ..base import Check, Delivery, Environment, Pace, digest
from ..records import RecordWriter

PACE_SHARE = 0.8
"""The share of Airtable's rates the relay's paces take: a request goes after its slot by as much as its
worker is slow, and Airtable counts arrivals in each second."""
_KEY = re.compile(
    r"^airtable:(?P<base>app[A-Za-z0-9]{14})/(?P<table>[^/]{1,200})/(?P<record>rec[A-Za-z0-9]{14})$"
)


def paces(base: str, token: str, settings: dict[str, Any]) -> tuple[Pace, Pace]:
    """The two schedules a request to ``base`` with ``token`` keeps to: the base's and the token's."""
    per_base = float(settings.get("airtable_requests_per_second", 5.0))
    per_token = float(settings.get("airtable_token_requests_per_second", 50.0))
    return (
        Pace(
            f"airtable:{base}",
            per_second=per_base * PACE_SHARE,
            what=f"Airtable's {per_base:g} requests a second per base",
        ),
        Pace(
            f"airtable-token:{digest(token)}",
            per_second=per_token * PACE_SHARE,
            what=f"Airtable's {per_token:g} requests a second per access token",
        ),
    )


class AirtableKind(RecordWriter):
    name = "airtable"
    scheme = "airtable"
    writer = "connectors.airtable.writer"

    def parse_record(self, record_key: str) -> dict[str, str]:
        match = _KEY.match(record_key)
        if not match:
            raise ValueError(
                "an Airtable record key is airtable:{base}/{table}/{record}, e.g. "
                "airtable:appXXXXXXXXXXXXXX/Deals/recXXXXXXXXXXXXXX"
            )
        return match.groupdict()

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        from .checks import check

        return check(target, env)


KIND = AirtableKind()
