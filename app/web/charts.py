"""Server-side SVG charts for the dashboard: stacked bars by day, lines, and horizontal bars. Written by hand
(decision 0019): the dashboard needs three plain shapes, and markup from the server needs no script, no
vendored library and no CDN, prints, and is read by screen readers through its <title> and a data table."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = ("#2e6bd1", "#12805c", "#c01048", "#b54708", "#7a5af8", "#0e9384", "#667085", "#dd2590")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 220, 44, 28, 12


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float | None]
    color: str = ""


def _colored(series: list[Series]) -> list[Series]:
    return [
        Series(s.name, s.values, s.color or PALETTE[n % len(PALETTE)]) for n, s in enumerate(series)
    ]


def _scale(top: float) -> tuple[float, list[float]]:
    """A round top for the axis and its ticks."""
    if top <= 0:
        return 1.0, [0.0, 0.5, 1.0]
    step = 10 ** len(str(int(top))) / 10
    for factor in (1, 2, 2.5, 5, 10):
        if top / (step * factor) <= 4:
            step *= factor
            break
    ticks = [step * n for n in range(int(top // step) + 2)]
    return ticks[-1], ticks


def _frame(title: str, days: list[str], top: float, ticks: list[float], unit: str) -> list[str]:
    plot_h = HEIGHT - BOTTOM - TOP
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in ticks:
        y = TOP + plot_h - plot_h * tick / top
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick:g}{unit}</text>'
        )
    every = max(1, len(days) // 8)
    slot = (WIDTH - LEFT - 8) / max(1, len(days))
    for n, day in enumerate(days):
        if n % every == 0:
            x = LEFT + slot * (n + 0.5)
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="tick">{day[5:]}</text>'
            )
    return parts


def _legend(series: list[Series]) -> str:
    items = "".join(
        f'<span><i style="background:{s.color}"></i>{escape(s.name)}</span>' for s in series
    )
    return f'<div class="legend">{items}</div>'


def stacked_bars(title: str, days: list[str], series: list[Series], unit: str = "") -> Markup:
    """One bar per day, each series stacked on the ones before it."""
    series = _colored(series)
    totals = [sum(s.values[n] or 0 for s in series) for n in range(len(days))]
    top, ticks = _scale(max(totals, default=0))
    parts = _frame(title, days, top, ticks, unit)
    plot_h, slot = HEIGHT - BOTTOM - TOP, (WIDTH - LEFT - 8) / max(1, len(days))
    for n, day in enumerate(days):
        base = 0.0
        for s in series:
            value = s.values[n] or 0
            if value:
                y, h = TOP + plot_h - plot_h * (base + value) / top, plot_h * value / top
                parts.append(
                    f'<rect x="{LEFT + slot * n + slot * 0.15:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                    f'height="{h:.1f}" fill="{s.color}"><title>{escape(day)} · {escape(s.name)}: '
                    f"{value:g}{unit}</title></rect>"
                )
            base += value
    return Markup("".join(parts) + "</svg>" + _legend(series))


def lines(title: str, days: list[str], series: list[Series], unit: str = "") -> Markup:
    """One line per series; a day without a value leaves a gap."""
    series = _colored(series)
    top, ticks = _scale(max((v for s in series for v in s.values if v is not None), default=0))
    parts = _frame(title, days, top, ticks, unit)
    plot_h, slot = HEIGHT - BOTTOM - TOP, (WIDTH - LEFT - 8) / max(1, len(days))
    for s in series:
        points = [
            (LEFT + slot * (n + 0.5), TOP + plot_h - plot_h * v / top)
            for n, v in enumerate(s.values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"/>'
            )
        for (x, y), (n, v) in zip(
            points, [(n, v) for n, v in enumerate(s.values) if v is not None], strict=True
        ):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{s.color}"><title>{escape(days[n])} · '
                f"{escape(s.name)}: {v:g}{unit}</title></circle>"
            )
    return Markup("".join(parts) + "</svg>" + _legend(series))


def share_bars(title: str, rows: list[tuple[str, float, str]]) -> Markup:
    """Horizontal bars of shares (0-1), one per row: (label, share, note)."""
    height = 26 * max(1, len(rows)) + 8
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {height}" role="img" class="chart" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for n, (label, share, note) in enumerate(rows):
        y, width = 6 + 26 * n, (WIDTH - 260) * max(0.0, min(1.0, share))
        color = PALETTE[1] if share >= 0.99 else PALETTE[3] if share >= 0.9 else PALETTE[2]
        parts.append(f'<text x="0" y="{y + 14}" class="tick">{escape(label)}</text>')
        parts.append(
            f'<rect x="110" y="{y}" width="{WIDTH - 260}" height="18" rx="4" class="track"/>'
        )
        parts.append(
            f'<rect x="110" y="{y}" width="{width:.1f}" height="18" rx="4" fill="{color}">'
            f"<title>{escape(label)}: {share:.1%} ({escape(note)})</title></rect>"
        )
        parts.append(
            f'<text x="{WIDTH - 140}" y="{y + 14}" class="tick">{share:.1%} · {escape(note)}</text>'
        )
    return Markup("".join(parts) + "</svg>")
