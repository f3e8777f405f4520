"""CSVs a spreadsheet opens as text: a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is a formula to Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)``, ``+cmd|' /C calc'!A0``), so
such a text cell gets a leading single quote, as OWASP's CSV-injection guidance says. Numbers stay numbers:
only text a tenant or a third party chose can carry a formula."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"
"""Written first where Excel opens the file: without it Excel reads UTF-8 in the local code page."""


def cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write(rows: Iterable[Iterable[Any]], bom: bool = False) -> str:
    """The rows as CSV text, each text cell neutralised."""
    out = io.StringIO()
    if bom:
        out.write(BOM)
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([cell(value) for value in row])
    return out.getvalue()
