"""Airtable: the document's status, link, version and credits written to fields of the row it belongs to,
and the finished file added to an attachment field by URL, in one PATCH.

Through ``pyairtable`` (pointed at ``airtable_api_url``), with a personal access token. Record keys:
``airtable:{base}/{table}/{record}`` (the table by name or id).

Airtable fetches an attachment from its URL after the write, so the relay's public URL must be reachable
from the internet for the file to land; the link fields work either way. The attachment's file name names
the task, and the row is read first, so a repeated attempt attaches once. Under ``replace`` the field holds
only the newest file; under ``keep`` the earlier ones stay.

Limits: at most 5 requests/s per base from each worker process, and after a 429, 30 s of quiet, as
Airtable asks."""

from __future__ import annotations

import re

from ..base import Delivery, Document, Environment, Outcome

_KEY = re.compile(r"^airtable:(?P<base>app[A-Za-z0-9]{14})/(?P<table>[^/]{1,200})/(?P<record>rec[A-Za-z0-9]{14})$")


class AirtableKind:
    name = "airtable"
    scheme = "airtable"
    needs_document = True

    def parse_record(self, record_key: str) -> dict[str, str]:
        match = _KEY.match(record_key)
        if not match:
            raise ValueError("an Airtable record key is airtable:{base}/{table}/{record}, e.g. "
                             "airtable:appXXXXXXXXXXXXXX/Deals/recXXXXXXXXXXXXXX")
        return match.groupdict()

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        return None  # the row is read in deliver: what is on it decides what is written

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        from .writer import write  # the client library loads only in the processes that write here

        return write(delivery, document, env, self.parse_record)


KIND = AirtableKind()
