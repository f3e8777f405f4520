"""A batch's CSV read as the person who saved it means it, or refused with the line at fault.

Files come from Excel (a semicolon between cells in much of Europe, a byte-order mark, Windows-1252 when not
saved as "CSV UTF-8") and Google Sheets (UTF-8, commas). So: the delimiter is the one that splits the header
into most columns (``,`` ``;`` tab ``|``); the text is UTF-8 (a byte-order mark is fine, UTF-16 with one
too) and any other encoding is refused by name rather than read into wrong letters; a line with more or
fewer cells than the header, a stray quote or a cell over 128 KiB is refused with its line, never reshaped.
Header names are trimmed and ``record_key`` and ``prompt`` are known whatever their case; a cell that holds
a plain number is a number (``{{ seats * 2 }}``), one with leading zeros or other marks stays text."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

from charset_normalizer import from_bytes

from app.domain.batch_template import RowFault

CELL_LIMIT = 128 * 1024
"""The most characters in one cell (Python's csv module stops at 128 KiB; so do we, with a 400)."""
_DELIMITERS = (",", ";", "\t", "|")
_KNOWN = ("record_key", "prompt")  # matched without regard to case
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,15})")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]{0,15})\.[0-9]{1,15}")

# the 128 KiB check is ours, with the line and the column; the module's own stop would lose both
csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))


@dataclass(frozen=True)
class CsvRows:
    rows: list[dict[str, Any]]
    lines: list[int]
    """Each row's first line in the file (the header is line 1)."""


class FileRefused(Exception):
    def __init__(self, faults: list[RowFault]):
        super().__init__(faults[0].message)
        self.faults = faults


def read(data: bytes) -> CsvRows:
    """The rows of a CSV whose header names the columns. Raises FileRefused with every fault found."""
    text = _decoded(data)
    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    faults: list[RowFault] = []
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a stray or unclosed quote, a NUL
            faults.append(
                RowFault(len(rows) + 1, "", f"this line cannot be read as CSV: {exc}", line)
            )
            break
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        if header is None:
            header = _header(cells, start)
            continue
        number = len(rows) + 1
        row, row_faults = _row(header, cells, number, start)
        faults += row_faults
        rows.append(row)
        lines.append(start)
    if header is None:
        raise FileRefused([_file_fault("the file has no header row", 1)])
    if faults:
        raise FileRefused(faults)
    return CsvRows(rows, lines)


def _decoded(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its mark: Excel's "Unicode text"
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileRefused(
            [
                _file_fault(
                    f"the file is not UTF-8 (it reads as {_encoding_of(data)}): save it as "
                    '"CSV UTF-8" (Excel) or download it from Google Sheets, which writes UTF-8',
                    line,
                )
            ]
        ) from None


def _encoding_of(data: bytes) -> str:
    """The encoding's name as people know it: Windows-1252 when it reads the same (most of the West's)."""
    best = from_bytes(data).best()
    if best is None:
        return "no text encoding known"
    try:
        if data.decode("cp1252") == str(best):
            return "Windows-1252"
    except UnicodeDecodeError:
        pass
    return best.encoding.replace("_", "-")


def _delimiter(text: str) -> str:
    """The one that splits the first line into most cells (a comma when none does)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {
        delimiter: len(next(csv.reader([first], delimiter=delimiter), []))
        for delimiter in _DELIMITERS
    }
    best = max(_DELIMITERS, key=lambda d: counts[d])  # ties: the earlier, so a comma
    return best if counts[best] > 1 else ","


def _header(cells: list[str], line: int) -> list[str]:
    names = [cell.strip() for cell in cells]
    names = [name.lower() if name.lower() in _KNOWN else name for name in names]
    while names and not names[-1]:
        names.pop()  # a spreadsheet's empty columns at the right
    seen: set[str] = set()
    for index, name in enumerate(names, start=1):
        if not name:
            raise FileRefused([_file_fault(f"column {index} of the header has no name", line)])
        if name.lower() in seen:
            raise FileRefused([_file_fault(f"two columns are named {name!r}", line)])
        seen.add(name.lower())
    if "record_key" not in names:
        raise FileRefused(
            [
                _file_fault(
                    f"the header has no record_key column (it has: {', '.join(names)[:200]})",
                    line,
                )
            ]
        )
    return names


def _row(
    header: list[str], cells: list[str], number: int, line: int
) -> tuple[dict[str, Any], list[RowFault]]:
    extra = cells[len(header) :]
    if len(cells) < len(header) or any(cell.strip() for cell in extra):
        return {}, [
            RowFault(
                number,
                "",
                f"this line has {len(cells)} cell(s) where the header names {len(header)} columns",
                line,
            )
        ]
    row: dict[str, Any] = {}
    faults: list[RowFault] = []
    for name, cell in zip(header, cells, strict=False):
        if len(cell) > CELL_LIMIT:
            faults.append(RowFault(number, name, "the cell is over 128 KiB", line))
            continue
        row[name] = cell.strip() if name == "record_key" else _value(cell.strip())
    return row, faults


def _value(cell: str) -> Any:
    """A plain number as a number; anything else (``007``, ``1e5``, ``+3``, ``1.50``...) as it was written."""
    if _INTEGER.fullmatch(cell):
        return int(cell)
    if _DECIMAL.fullmatch(cell) and repr(float(cell)) == cell:
        return float(cell)
    return cell


def _file_fault(message: str, line: int) -> RowFault:
    return RowFault(0, "file", message, line)
