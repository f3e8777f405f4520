"""Documents as HTML, CSV and plain text: the edit view and the exports that need no LibreOffice."""

from __future__ import annotations

import csv
import io
import re
from html import escape
from pathlib import Path

from docx import Document
from openpyxl import load_workbook
from pptx import Presentation

_SUM = re.compile(r"^=SUM\(([A-Z]+)(\d+):([A-Z]+)(\d+)\)$")


def sheet_rows(sheet) -> list[list[str]]:
    """Cell values as text, with the SUM formulas the builder writes evaluated (openpyxl keeps no
    cached results, and a CSV of formulas would help nobody)."""
    return [[_display(_value(sheet, cell.value)) for cell in row] for row in sheet.iter_rows()]


def _value(sheet, value):
    if isinstance(value, str) and (match := _SUM.match(value)):
        first_col, first_row, last_col, last_row = match.groups()
        total = 0.0
        for row in sheet[f"{first_col}{first_row}:{last_col}{last_row}"]:
            for cell in row:
                inner = _value(sheet, cell.value)
                total += inner if isinstance(inner, int | float) else 0
        return total
    return value


def _display(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def xlsx_to_csv(path: Path) -> str:
    sheet = load_workbook(path).active
    out = io.StringIO()
    csv.writer(out).writerows(sheet_rows(sheet))
    return out.getvalue()


def docx_to_text(path: Path) -> str:
    document = Document(str(path))
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        lines += ["\t".join(cell.text for cell in row.cells) for row in table.rows]
    return "\n".join(lines) + "\n"


def to_html(path: Path, ext: str, title: str) -> str:
    body = {"xlsx": _xlsx_html, "docx": _docx_html, "pptx": _pptx_html}.get(ext, _text_html)(path)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem}"
        "section{border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1rem 0}</style>"
        f"</head><body><p><em>Read-only view</em></p>{body}</body></html>"
    )


def _table(rows: list[list[str]]) -> str:
    cells = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table>{cells}</table>"


def _xlsx_html(path: Path) -> str:
    workbook = load_workbook(path)
    return "".join(
        f"<section><h2>{escape(s.title)}</h2>{_table(sheet_rows(s))}</section>" for s in workbook
    )


def _docx_html(path: Path) -> str:
    document = Document(str(path))
    parts = []
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        tag = "h1" if style in ("Title", "Heading 1") else "li" if "List" in style else "p"
        parts.append(f"<{tag}>{escape(paragraph.text)}</{tag}>")
    parts += [_table([[c.text for c in row.cells] for row in t.rows]) for t in document.tables]
    return "".join(parts)


def _pptx_html(path: Path) -> str:
    deck = Presentation(str(path))
    slides = []
    for number, slide in enumerate(deck.slides, start=1):
        texts = [
            escape(s.text_frame.text)
            for s in slide.shapes
            if s.has_text_frame and s.text_frame.text
        ]
        charts = sum(1 for s in slide.shapes if s.has_chart)
        extra = f"<p><em>{charts} chart(s)</em></p>" if charts else ""
        slides.append(
            f"<section><h2>Slide {number}</h2>{''.join(f'<p>{t}</p>' for t in texts)}{extra}</section>"
        )
    return "".join(slides)


def _text_html(path: Path) -> str:
    return f"<pre>{escape(path.read_text())}</pre>"
