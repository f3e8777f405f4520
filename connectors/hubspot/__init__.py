"""HubSpot: the document's status, link, version and credits written to properties of the CRM record it
belongs to, and the finished file uploaded to the Files API and attached to a note on the record.

Over HubSpot's REST API through the relay's outbound client (``hubspot_api_url``; connectors.hubspot.api).
Record keys: ``hubspot:{object}:{id}``,
for deals, contacts, companies, tickets and custom objects by type id (``hubspot:2-1234567:42``).

Idempotent: each note carries ``relay-task:{task id}``, and the record's notes are read (through its
associations, which are read-your-writes, not the search index) before one is made, so a repeated attempt
attaches once. An uploaded file's id is saved with the delivery before the note is made. Under the
``replace`` policy, the relay's earlier notes on the record are archived with their files.

Values: each is written as its property takes it (a dropdown's option, a date at midnight UTC), from the
property definitions read once per connection and object (connectors.hubspot.properties); a value that no
option fits is refused before anything is written, naming the property, the value and the options.

Throttling: every call is paced per token under the account's burst limit (RELAY_HUBSPOT_CALLS_PER_WINDOW);
a 429 is a throttle (no attempt spent) retried after the interval HubSpot's headers give (``Retry-After``,
else ``X-HubSpot-RateLimit-Interval-Milliseconds``), or after an hour for the daily limit."""

from __future__ import annotations

import re

from ..base import Check, Delivery, Environment
from ..records import RecordWriter

OBJECTS = {
    "deal": "deals",
    "deals": "deals",
    "contact": "contacts",
    "contacts": "contacts",
    "company": "companies",
    "companies": "companies",
    "ticket": "tickets",
    "tickets": "tickets",
}
_KEY = re.compile(r"^hubspot:(?P<object>[a-z]+|\d-\d+):(?P<id>\d{1,20})$")


class HubSpotKind(RecordWriter):
    name = "hubspot"
    scheme = "hubspot"
    writer = "connectors.hubspot.writer"

    def parse_record(self, record_key: str) -> dict[str, str]:
        match = _KEY.match(record_key)
        object_type = match and (
            OBJECTS.get(match["object"]) or (match["object"] if "-" in match["object"] else None)
        )
        if not match or not object_type:
            raise ValueError(
                "a HubSpot record key is hubspot:{object}:{id}, with deal, contact, company, ticket "
                "or a custom object's type id (2-1234567), e.g. hubspot:deal:42"
            )
        return {"object_type": object_type, "id": match["id"]}

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        from .check import check  # the HTTP client loads only in a process that checks or writes

        return check(target, env)


KIND = HubSpotKind()
