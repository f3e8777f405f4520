"""The deterministic stand-in for the agent: one builder per output format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .excel import build_workbook
from .plan import Plan, make_plan
from .slides import build_deck, build_outline
from .text import KINDS as TEXT_KINDS
from .text import build_text
from .word import build_document


@dataclass(frozen=True)
class Product:
    """What one endpoint produces: the run format, its file, and how to build a turn of it."""

    format: str
    extension: str
    file_name: str
    build: Callable[[Path | None, Plan, Path], str]


def _text_product(kind: str) -> Product:
    return Product(
        "text", "md", f"{kind}.md", lambda prev, plan, out: build_text(prev, plan, out, kind)
    )


PRODUCTS: dict[str, Product] = {
    "excel": Product("excel", "xlsx", "workbook.xlsx", build_workbook),
    "word": Product("word", "docx", "document.docx", build_document),
    "slides": Product("slides", "pptx", "deck.pptx", build_deck),
    "outline": Product("slides", "pptx", "outline.pptx", build_outline),
    **{f"text/{kind}": _text_product(kind) for kind in TEXT_KINDS},
}

__all__ = ["PRODUCTS", "TEXT_KINDS", "Plan", "Product", "make_plan"]
