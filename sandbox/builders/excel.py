"""Workbooks: a titled table with totals and a bar chart per turn; resuming adds a sheet.

One layout (cells, styles, widths, chart), written by two libraries: a new workbook with XlsxWriter, which only
writes and costs a quarter of openpyxl's CPU (tests build thousands of workbooks); a resumed one with openpyxl,
which opens the previous workbook, keeps its sheets and charts, and adds the new sheet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import xlsxwriter
from openpyxl import load_workbook
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from .plan import Plan

# Each style, for both writers. openpyxl's style objects are values: made once, shared by every cell using them.
_STYLES = {
    "title": {"bold": True, "font_size": 14},
    "header": {"bold": True, "bg_color": "#DDEBF7", "pattern": 1},
    "number": {"num_format": "#,##0"},
    "total": {"bold": True},
    "total_number": {"bold": True, "num_format": "#,##0"},
}
_OPENPYXL = {
    "title": {"font": Font(bold=True, size=14)},
    "header": {"font": Font(bold=True), "fill": PatternFill("solid", fgColor="DDEBF7")},
    "number": {"number_format": "#,##0"},
    "total": {"font": Font(bold=True)},
    "total_number": {"font": Font(bold=True), "number_format": "#,##0"},
}


@dataclass(frozen=True)
class _Cell:
    row: int  # 0-based, as XlsxWriter counts
    col: int
    value: str | int
    style: str | None = None
    result: int | None = None
    """A formula's value, stored with it so a reader that does not calculate still shows the total."""


@dataclass
class _Layout:
    title: str
    sheet: str
    cells: list[_Cell] = field(default_factory=list)
    widths: dict[int, float] = field(default_factory=dict)
    header_row: int = 2
    first_row: int = 3
    last_row: int = 3
    last_value_col: int = 1


def build_workbook(previous: Path | None, plan: Plan, out: Path) -> str:
    if previous is None:
        layout = _layout(plan, _sheet_title(set(), plan.heading))
        _write_new(layout, out)
    else:
        layout = _add_sheet(previous, plan, out)
    verb = "Built a workbook with" if previous is None else "Added"
    return (
        f"{verb} sheet '{layout.sheet}': {len(plan.rows)} rows across "
        f"{plan.columns[0]}-{plan.columns[-1]} with totals and a bar chart."
    )


def _sheet_title(taken: set[str], wanted: str) -> str:
    base = "".join(c for c in wanted if c not in "[]:*?/\\")[:28] or "Sheet"
    title, n = base, 2
    while title in taken:
        title, n = f"{base[:25]} {n}", n + 1
    return title


def _layout(plan: Plan, sheet: str) -> _Layout:
    layout = _Layout(title=plan.title, sheet=sheet)
    cells = layout.cells
    cells.append(_Cell(0, 0, plan.title, "title"))
    header = ["Item", *plan.columns, "Total"]
    cells += [_Cell(layout.header_row, col, name, "header") for col, name in enumerate(header)]
    last_value_col = len(plan.columns)  # 0-based: column A holds the names
    first = layout.first_row
    for offset, (name, values) in enumerate(plan.rows):
        row = first + offset
        cells.append(_Cell(row, 0, name))
        cells += [_Cell(row, col, value, "number") for col, value in enumerate(values, start=1)]
        cells.append(
            _Cell(
                row,
                last_value_col + 1,
                f"=SUM({_ref(row, 1)}:{_ref(row, last_value_col)})",
                "number",
                sum(values),
            )
        )
    last = first + len(plan.rows) - 1
    cells.append(_Cell(last + 1, 0, "Total", "total"))
    totals = [
        sum(values[col - 1] for _, values in plan.rows) for col in range(1, last_value_col + 1)
    ]
    for col in range(1, last_value_col + 2):
        result = totals[col - 1] if col <= last_value_col else sum(totals)
        cells.append(
            _Cell(
                last + 1, col, f"=SUM({_ref(first, col)}:{_ref(last, col)})", "total_number", result
            )
        )
    layout.widths = {0: 18, **{col: 13 for col in range(1, last_value_col + 2)}}
    layout.last_row, layout.last_value_col = last, last_value_col
    return layout


def _ref(row: int, col: int) -> str:
    return f"{get_column_letter(col + 1)}{row + 1}"


def _write_new(layout: _Layout, out: Path) -> None:
    workbook = xlsxwriter.Workbook(str(out), {"in_memory": True})  # no temporary files per part
    sheet = workbook.add_worksheet(layout.sheet)
    formats = {name: workbook.add_format(spec) for name, spec in _STYLES.items()}
    for cell in layout.cells:
        style = formats[cell.style] if cell.style else None
        if isinstance(cell.value, str) and cell.value.startswith("="):
            sheet.write_formula(cell.row, cell.col, cell.value, style, cell.result)
        else:
            sheet.write(cell.row, cell.col, cell.value, style)
    for col, width in layout.widths.items():
        sheet.set_column(col, col, width)
    chart = workbook.add_chart({"type": "column"})
    for col in range(1, layout.last_value_col + 1):
        chart.add_series(
            {
                "name": [layout.sheet, layout.header_row, col],
                "categories": [layout.sheet, layout.first_row, 0, layout.last_row, 0],
                "values": [layout.sheet, layout.first_row, col, layout.last_row, col],
            }
        )
    chart.set_title({"name": layout.title[:60]})
    chart.set_y_axis({"name": "Value"})
    sheet.insert_chart(layout.header_row, layout.last_value_col + 3, chart)
    workbook.close()


def _add_sheet(previous: Path, plan: Plan, out: Path) -> _Layout:
    workbook = load_workbook(previous)
    layout = _layout(plan, _sheet_title(set(workbook.sheetnames), plan.heading))
    sheet = workbook.create_sheet(layout.sheet)
    for cell in layout.cells:
        target = sheet.cell(row=cell.row + 1, column=cell.col + 1, value=cell.value)
        for attribute, value in _OPENPYXL.get(cell.style or "", {}).items():
            setattr(target, attribute, value)
    for col, width in layout.widths.items():
        sheet.column_dimensions[get_column_letter(col + 1)].width = width
    sheet.add_chart(
        _openpyxl_chart(sheet, layout), _ref(layout.header_row, layout.last_value_col + 3)
    )
    workbook.active = workbook.index(sheet)
    workbook.save(out)
    return layout


def _openpyxl_chart(sheet, layout: _Layout) -> BarChart:
    chart = BarChart()
    chart.title, chart.y_axis.title = layout.title[:60], "Value"
    data = Reference(
        sheet,
        min_col=2,
        max_col=layout.last_value_col + 1,
        min_row=layout.header_row + 1,
        max_row=layout.last_row + 1,
    )
    chart.add_data(data, titles_from_data=True)
    chart.set_categories(
        Reference(sheet, min_col=1, min_row=layout.first_row + 1, max_row=layout.last_row + 1)
    )
    return chart
