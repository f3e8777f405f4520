"""Usage you can report, from the daily usage rows (app.stores.usage), which outlive the tasks they count:
by day, by record or by format, as JSON or CSV; and the series the dashboard's charts draw."""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from app.core import csv_safe
from app.stores import usage
from app.stores.usage import UsageRows


class Needs(Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    usage: UsageRows


GROUPS = ("day", "record", "format")
UNKNOWN_FORMAT = "unknown"
"""The format of usage counted before rows kept one per format."""


def report(
    ctx: Needs,
    tenant_id: str,
    first: date,
    last: date,
    group_by: str = "day",
    record_key: str | None = None,
    rows: list[tuple[str, dict]] | None = None,
) -> dict[str, Any]:
    """The tenant's usage from ``first`` to ``last``, one item per day, record or format, and the totals
    (``rows``: those days' rows, UsageRows.raw, when the caller has read them)."""
    raw = (
        rows if rows is not None else ctx.usage.raw(tenant_id, first, last) if first <= last else []
    )
    prefix = usage.record_prefix(record_key) if record_key else ""
    grouped: dict[str, dict] = {}
    for day, row in raw:
        for key, counted in _parts(day, row, group_by, prefix):
            if counted["task_count"]:
                _add(grouped.setdefault(key, _zero()), counted)
    items = [
        {group_by: key or None, **values}
        for key, values in sorted(grouped.items(), key=_order(group_by))
    ]
    totals = _zero()
    for item in items:
        _add(totals, item)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "group_by": group_by,
        "record_key": record_key,
        "totals": totals,
        "items": items,
    }


def _parts(day: str, row: dict, group_by: str, prefix: str) -> list[tuple[str, dict]]:
    if group_by == "day" or (prefix and group_by == "record"):
        return [
            (day if group_by == "day" else row.get(prefix + "key", ""), usage.totals(row, prefix))
        ]
    # the tasks without a record: one item of their own, so the items add up
    if group_by == "record":
        return _with_rest(
            row, [(record.pop("record_key"), record) for record in usage.records_of(row)], ""
        )
    return format_parts(row)


def format_parts(row: dict) -> list[tuple[str, dict]]:
    """A day's row by format; the rest (counted before the rows kept formats) as UNKNOWN_FORMAT."""
    formats = sorted({name.split(":")[1] for name in row if name.startswith("f:")})
    return _with_rest(
        row,
        [(fmt or UNKNOWN_FORMAT, usage.totals(row, f"f:{fmt}:")) for fmt in formats],
        UNKNOWN_FORMAT,
    )


def _with_rest(row: dict, parts: list[tuple[str, dict]], rest_key: str) -> list[tuple[str, dict]]:
    counted = usage.totals(row)
    rest = {name: counted[name] - sum(part[name] for _, part in parts) for name in counted}
    return [*parts, (rest_key, rest)] if rest["task_count"] > 0 else parts


def _order(group_by: str):
    if group_by == "day":
        return lambda item: item[0]
    return lambda item: (-item[1]["credits_used"], item[0])  # who spent most first


def _zero() -> dict:
    return {"credits_used": 0, "task_count": 0, "duration_ms": 0}


def _add(into: dict, counted: dict) -> None:
    for name in usage.FIELDS:
        into[name] = (
            usage.number(into[name] + counted[name])
            if name == "credits_used"
            else into[name] + counted[name]
        )


def as_csv(answer: dict) -> str:
    """The report as CSV; a record key or any other text cell never opens as a formula."""
    head = [answer["group_by"], *usage.FIELDS]
    items = (
        [item[answer["group_by"]] or "", *(item[name] for name in usage.FIELDS)]
        for item in answer["items"]
    )
    return csv_safe.write([head, *items])


# -- the dashboard's series ---------------------------------------------------------------------------------


def daily_series(ctx: Needs, tenant_id: str, first: date, last: date) -> list[dict]:
    """Per day: credits, tasks by outcome, the generation-time histogram with its p50 and p95 (s) and each
    destination kind's deliveries delivered and dead."""
    series = []
    for day, row in ctx.usage.raw(tenant_id, first, last):
        histogram = [int(row.get(f"h:{n}") or 0) for n in range(1, len(usage.SECONDS_BOUNDS) + 2)]
        deliveries: dict[str, dict[str, int]] = {}
        for name, value in row.items():
            if name.startswith("d:"):
                _, kind, outcome = name.split(":")
                deliveries.setdefault(kind, {"delivered": 0, "dead": 0})[outcome] = int(value)
        series.append(
            {
                "date": day,
                "credits_used": usage.number(row.get("credits_used")),
                "outcomes": {
                    name[2:]: int(value) for name, value in row.items() if name.startswith("o:")
                },
                "histogram": histogram,
                "p50": percentile(histogram, 0.50),
                "p95": percentile(histogram, 0.95),
                "deliveries": deliveries,
            }
        )
    return series


def percentile(histogram: list[int], share: float) -> float | None:
    """The ``share`` percentile of the generation-time histogram, in seconds, interpolated in its bucket
    (the last, open bucket counts as one bucket's width past the last bound)."""
    total = sum(histogram)
    if not total:
        return None
    bounds = (0, *usage.SECONDS_BOUNDS, usage.SECONDS_BOUNDS[-1] * 2)
    wanted, seen = share * total, 0
    for n, count in enumerate(histogram):
        if count and seen + count >= wanted:
            low, high = bounds[n], bounds[n + 1]
            return round(low + (high - low) * (wanted - seen) / count, 1)
        seen += count
    return float(bounds[-1])
