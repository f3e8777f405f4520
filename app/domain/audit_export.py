"""The audit log as files, and the times its filters take: shared by GET /v1/audit.csv and .jsonl, the
dashboard's export links and `relay audit export`."""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta

from app.core import csv_safe
from app.stores.audit import COLUMNS, AuditEntry


def csv_lines(entries: Iterable[AuditEntry]) -> Iterator[str]:
    """A header row (after a BOM, for Excel), then one row per entry; each text cell made safe for
    spreadsheets (app.core.csv_safe): a target's name or an actor's is chosen by a tenant."""
    yield csv_safe.write([COLUMNS], bom=True)
    for entry in entries:
        yield csv_safe.write([[getattr(entry, column) for column in COLUMNS]])


def jsonl_lines(entries: Iterable[AuditEntry]) -> Iterator[str]:
    for entry in entries:
        yield json.dumps(entry.view(), ensure_ascii=False) + "\n"


def moment(text: str | None, end_of_day: bool = False) -> float | None:
    """A day (UTC; ``end_of_day``: up to its last millisecond; a day past its month's end is the month's
    last) or an ISO 8601 time, as a Unix time; None for none, or past the year 9999. ValueError if it is
    neither."""
    if not text:
        return None
    year, month, day = (int(part) for part in text[:10].split("-"))
    first = date(year, month, min(day, calendar.monthrange(year, month)[1]))
    rest = text[10:].replace(" ", "T").replace("Z", "+00:00")
    when = datetime.fromisoformat(first.isoformat() + rest)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    try:
        if end_of_day and not rest:
            return (when + timedelta(days=1)).timestamp() - 0.001
        return when.timestamp()
    except OverflowError:
        return None
