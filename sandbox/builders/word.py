"""Word documents: a titled section with prose, a table and bullets per turn; resuming adds a section."""

from __future__ import annotations

import io
from pathlib import Path

from docx import Document

from .plan import Plan
from .templates import blank_document


def build_document(previous: Path | None, plan: Plan, out: Path) -> str:
    document = Document(str(previous)) if previous else Document(io.BytesIO(blank_document()))
    if previous is None:
        document.add_heading(plan.title, level=0)
    else:
        document.add_heading(plan.title, level=1)
    first, last = plan.columns[0], plan.columns[-1]
    document.add_paragraph(
        f"This section covers {plan.title.lower()} from {first} to {last}. "
        f"The table lists {len(plan.rows)} lines; the highlights follow it."
    )
    table = document.add_table(rows=1, cols=len(plan.columns) + 1)
    table.style = "Light Grid Accent 1"
    for cell, text in zip(table.rows[0].cells, ["Item", *plan.columns], strict=True):
        cell.text = text
    for name, values in plan.rows:
        cells = table.add_row().cells
        cells[0].text = name
        for cell, value in zip(cells[1:], values, strict=True):
            cell.text = f"{value:,}"
    for bullet in plan.bullets:
        document.add_paragraph(bullet, style="List Bullet")
    document.save(str(out))
    verb = "Wrote a document with" if previous is None else "Added"
    return f"{verb} section '{plan.title}': a {len(plan.rows)}-row table and {len(plan.bullets)} highlights."
