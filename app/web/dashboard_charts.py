"""The dashboard's charts, from admin's plain data (app.domain.admin) to SVG (app.web.charts)."""

from __future__ import annotations

from markupsafe import Markup

from app.web.charts import Series, lines, share_bars, stacked_bars

_OUTCOME_COLORS = {
    "completed": "#12805c",
    "failed": "#c01048",
    "cancelled": "#667085",
    "expired": "#b54708",
}


def overview_charts(data: dict) -> dict[str, Markup]:
    dates = data["dates"]
    outcomes = [
        Series(name, values, _OUTCOME_COLORS.get(name, ""))
        for name, values in sorted(
            data["outcomes"].items(),
            key=lambda item: (
                list(_OUTCOME_COLORS).index(item[0]) if item[0] in _OUTCOME_COLORS else 99
            ),
        )
    ]
    rates = [
        (
            kind,
            counted["delivered"] / (counted["delivered"] + counted["dead"]),
            f"{counted['delivered']} of {counted['delivered'] + counted['dead']}",
        )
        for kind, counted in data["deliveries"].items()
        if counted["delivered"] + counted["dead"]
    ]
    return {
        "credits": stacked_bars(
            "Credits per day, by tenant",
            dates,
            [Series(name, values) for name, values in data["credits"].items()],
        ),
        "outcomes": stacked_bars("Tasks per day, by outcome", dates, outcomes),
        "time": lines(
            "Generation time per day (completed tasks), p50 and p95",
            dates,
            [Series("p50", data["p50"], "#2e6bd1"), Series("p95", data["p95"], "#b54708")],
            unit="s",
        ),
        "deliveries": share_bars("Deliveries that got through, by destination kind", rates),
    }


def tenant_chart(data: dict) -> Markup:
    return stacked_bars(
        f"{data['name']}: credits per day, by format",
        data["dates"],
        [Series(fmt, values) for fmt, values in sorted(data["by_format"].items())],
    )
