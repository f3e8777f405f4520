"""The document formats a relay user can ask for, with the labels no-code tools show in their dropdowns.
The list itself comes from the submit schema, so a format added there shows up everywhere."""

from __future__ import annotations

import schemas

LABELS = {
    "excel": "Excel workbook (.xlsx)",
    "word": "Word document (.docx)",
    "slides": "PowerPoint deck (.pptx)",
    "slides_outline": "Slide outline (text)",
    "text_summary": "Summary (text)",
    "text_email": "Email draft (text)",
    "text_memo": "Memo (text)",
    "text_rewrite": "Rewrite (text)",
    "text_bullets": "Bullet points (text)",
}


def document_formats() -> list[dict[str, str]]:
    names = schemas.load("relay/submit-request.json")["properties"]["format"]["enum"]
    return [
        {"id": name, "label": LABELS.get(name, name.replace("_", " ").capitalize())}
        for name in names
    ]


def export_formats() -> list[str]:
    return list(schemas.load("relay/export-create.json")["properties"]["format"]["enum"])
