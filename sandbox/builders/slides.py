"""Decks: a title slide and a chart slide, then a slide with a chart per turn; outlines are bullet decks."""

from __future__ import annotations

import io
from pathlib import Path

from pptx import Presentation
from pptx.chart.data import CategoryChartData
from pptx.enum.chart import XL_CHART_TYPE
from pptx.util import Inches

from .plan import Plan
from .templates import blank_deck

_TITLE, _TITLE_AND_CONTENT, _TITLE_ONLY = "Title Slide", "Title and Content", "Title Only"


def build_deck(previous: Path | None, plan: Plan, out: Path) -> str:
    deck = _open(previous)
    if previous is None:
        slide = deck.slides.add_slide(_layout(deck, _TITLE))
        slide.shapes.title.text = plan.title
        slide.placeholders[1].text = f"{plan.columns[0]} to {plan.columns[-1]}"
    _add_bullets(deck, f"{plan.title}: highlights", plan.bullets)
    _add_chart(deck, plan)
    deck.save(str(out))
    verb = "Built a deck with" if previous is None else "Added"
    return f"{verb} slides on '{plan.title}': highlights and a column chart ({len(deck.slides)} slides now)."


def build_outline(previous: Path | None, plan: Plan, out: Path) -> str:
    deck = _open(previous)
    if previous is None:
        slide = deck.slides.add_slide(_layout(deck, _TITLE))
        slide.shapes.title.text = plan.title
        slide.placeholders[1].text = "Outline"
    for name, _ in plan.rows[:4]:
        _add_bullets(deck, f"{name}", [f"Context for {name}", f"{name} figures", "Next steps"])
    deck.save(str(out))
    return f"Outlined '{plan.title}' in {len(deck.slides)} slides."


def _open(previous: Path | None):
    return Presentation(str(previous)) if previous else Presentation(io.BytesIO(blank_deck()))


def _layout(deck, name: str):
    """A layout by name: the lean template has fewer than python-pptx's default, so indexes would differ."""
    layout = deck.slide_layouts.get_by_name(name)
    assert layout is not None, f"the deck has no {name!r} layout"
    return layout


def _add_bullets(deck, title: str, bullets: list[str]) -> None:
    slide = deck.slides.add_slide(_layout(deck, _TITLE_AND_CONTENT))
    slide.shapes.title.text = title
    body = slide.placeholders[1].text_frame
    body.text = bullets[0] if bullets else ""
    for bullet in bullets[1:]:
        body.add_paragraph().text = bullet


def _add_chart(deck, plan: Plan) -> None:
    slide = deck.slides.add_slide(_layout(deck, _TITLE_ONLY))
    slide.shapes.title.text = plan.title
    data = CategoryChartData()
    data.categories = plan.columns
    for name, values in plan.rows:
        data.add_series(name, values)
    slide.shapes.add_chart(
        XL_CHART_TYPE.COLUMN_CLUSTERED, Inches(0.5), Inches(1.5), Inches(9), Inches(5.5), data
    )
