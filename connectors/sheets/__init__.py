"""Google Sheets: the document's status, link, version and credits written to cells of the row it belongs
to. A sheet holds no files, so the file goes as a link.

Through ``google-api-python-client`` (its bundled discovery document, pointed at ``sheets_api_url``), with
a service account or an OAuth refresh token through google-auth, as for Drive. Record keys:
``sheets:{spreadsheet}/{sheet}/{row}`` (a row number), or ``sheets:{spreadsheet}/{sheet}/{column}={value}``
(the first row whose cell under that header holds the value). The connection's ``fields`` name header
cells of row 1. Every value is written RAW, so a text that begins with "=" stays text.

Versions: under ``replace`` the link cell holds the newest link; under ``keep`` one line per version,
``{file name}: {link}``, and a repeated attempt finds its own line. Sheets allows 60 reads and 60 writes a
minute per user: each credential's calls are paced across every worker, the header row and key column are
kept a few seconds, and a 429 waits a minute without spending an attempt (connectors.sheets.quota)."""

from __future__ import annotations

import re

from ..base import Check, Delivery, Environment
from ..records import RecordWriter

_KEY = re.compile(
    r"^sheets:(?P<spreadsheet>[A-Za-z0-9_-]{20,100})/(?P<sheet>[^/]{1,100})/"
    r"(?:(?P<row>[1-9]\d{0,6})|(?P<column>[^=]{1,100})=(?P<value>.{1,200}))$"
)


class SheetsKind(RecordWriter):
    name = "sheets"
    scheme = "sheets"
    writer = "connectors.sheets.writer"

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        from .check import check

        return check(target, env, self.parse_record)

    def parse_record(self, record_key: str) -> dict[str, str]:
        match = _KEY.match(record_key)
        if not match:
            raise ValueError(
                "a Google Sheets record key is sheets:{spreadsheet}/{sheet}/{row}, or "
                "sheets:{spreadsheet}/{sheet}/{column}={value} to find the row by a key column"
            )
        return {k: v for k, v in match.groupdict().items() if v is not None}


KIND = SheetsKind()
