"""Airtable: the document's status, link, version and credits written to fields of the row it belongs to,
and the finished file added to an attachment field by URL, in one PATCH.

Through ``pyairtable`` (pointed at ``airtable_api_url``), with a personal access token. Record keys:
``airtable:{base}/{table}/{record}`` (the table by name or id).

Airtable fetches an attachment from its URL after the write, so the relay's public URL must be reachable
from the internet for the file to land; the link fields work either way. The attachment's file name names
the task, and the row is read first, so a repeated attempt attaches once. Under ``replace`` the field holds
only the newest file; under ``keep`` the earlier ones stay.

Limits: Airtable takes 5 requests a second per base, from all its clients. A write is one request, or two
when a file is attached (the row is read first), so every worker shares one pace of 1.5 writes a second per
base (app.domain.pacing), 3 requests a second, which leaves room for a write that goes a little after its
slot (its worker was still fetching the file). After a 429 all the same, 30 s of quiet, as Airtable asks."""

from __future__ import annotations

import re

from ..base import Delivery, Pace
from ..records import RecordWriter

WRITES_PER_SECOND = 1.5
_KEY = re.compile(
    r"^airtable:(?P<base>app[A-Za-z0-9]{14})/(?P<table>[^/]{1,200})/(?P<record>rec[A-Za-z0-9]{14})$"
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

    def pace(self, delivery: Delivery) -> Pace | None:
        try:
            base = self.parse_record((delivery.event.get("data") or {}).get("record_key") or "")[
                "base"
            ]
        except ValueError:  # refused when it was submitted; it fails as it writes, nothing to pace
            return None
        return Pace(f"airtable:{base}", per_second=WRITES_PER_SECOND)


KIND = AirtableKind()
