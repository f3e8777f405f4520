"""Workbooks: a titled table with totals and a bar chart per turn; resuming adds a sheet."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook, load_workbook
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from .plan import Plan

# Styles are values in openpyxl: made once, shared by every cell and workbook that uses them.
_HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
_TITLE_FONT = Font(bold=True, size=14)
_BOLD = Font(bold=True)
_NUMBER = "#,##0"


def build_workbook(previous: Path | None, plan: Plan, out: Path) -> str:
    if previous is None:
        workbook = Workbook()
        sheet = workbook.active
        sheet.title = _sheet_title(workbook, plan.heading)
    else:
        workbook = load_workbook(previous)
        sheet = workbook.create_sheet(_sheet_title(workbook, plan.heading))
    _fill(sheet, plan)
    workbook.active = workbook.index(sheet)
    workbook.save(out)
    verb = "Built a workbook with" if previous is None else "Added"
    return (f"{verb} sheet '{sheet.title}': {len(plan.rows)} rows across "
            f"{plan.columns[0]}-{plan.columns[-1]} with totals and a bar chart.")


def _sheet_title(workbook: Workbook, wanted: str) -> str:
    base = "".join(c for c in wanted if c not in "[]:*?/\\")[:28] or "Sheet"
    title, n = base, 2
    while title in workbook.sheetnames:
        title, n = f"{base[:25]} {n}", n + 1
    return title


def _fill(sheet, plan: Plan) -> None:
    sheet["A1"] = plan.title
    sheet["A1"].font = _TITLE_FONT
    header = ["Item", *plan.columns, "Total"]
    for col, name in enumerate(header, start=1):
        cell = sheet.cell(row=3, column=col, value=name)
        cell.font, cell.fill = _BOLD, _HEADER_FILL
    first, last_col = 4, len(plan.columns) + 1
    for offset, (name, values) in enumerate(plan.rows):
        row = first + offset
        sheet.cell(row=row, column=1, value=name)
        for col, value in enumerate(values, start=2):
            sheet.cell(row=row, column=col, value=value).number_format = _NUMBER
        total = f"=SUM(B{row}:{get_column_letter(last_col)}{row})"
        sheet.cell(row=row, column=last_col + 1, value=total).number_format = _NUMBER
    last = first + len(plan.rows) - 1
    sheet.cell(row=last + 1, column=1, value="Total").font = _BOLD
    for col in range(2, last_col + 2):
        letter = get_column_letter(col)
        cell = sheet.cell(row=last + 1, column=col, value=f"=SUM({letter}{first}:{letter}{last})")
        cell.font, cell.number_format = _BOLD, _NUMBER
    sheet.column_dimensions["A"].width = 18
    for col in range(2, last_col + 2):
        sheet.column_dimensions[get_column_letter(col)].width = 13
    chart = BarChart()
    chart.title, chart.y_axis.title = plan.title[:60], "Value"
    data = Reference(sheet, min_col=2, max_col=last_col, min_row=3, max_row=last)
    chart.add_data(data, titles_from_data=True)
    chart.set_categories(Reference(sheet, min_col=1, min_row=first, max_row=last))
    sheet.add_chart(chart, f"{get_column_letter(last_col + 3)}3")
