"""A fake Google Sheets API v4 for tests and local runs: values.get and values.batchUpdate over A1 ranges
(a row ``1:1``, a column ``B:B``, a cell ``B5``) of quoted sheet names, Google's error shape
(``{"error": {"code", "message", "status"}}``), and tokens from the fake Drive's token endpoint with the
spreadsheets scope, and 60 requests a minute (429 RESOURCE_EXHAUSTED past it). Knobs: connectors.fake_knobs
(a 429 carries Retry-After: ``retry_after``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from flask import Flask, jsonify, request

from ..fake_knobs import Knobs, Window
from ..gdrive.fake import FakeDrive

SHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"
_RANGE = re.compile(r"^'((?:[^']|'')+)'!(?:(\d+):(\d+)|([A-Z]+):([A-Z]+)|([A-Z]+)(\d+))$")


@dataclass
class FakeSheets:
    auth: FakeDrive
    """Issues and checks the tokens (its token endpoint, with the spreadsheets scope)."""
    spreadsheets: dict[str, dict[str, list[list[str]]]] = field(default_factory=dict)
    """Spreadsheet id -> sheet name -> rows of cells."""
    shared: set[str] = field(default_factory=set)
    """Spreadsheets the credentials may write to (others answer 403)."""
    retry_after: int = 1
    writes: list[dict] = field(default_factory=list)
    """Each batchUpdate's cells: range -> value."""
    knobs: Knobs = field(default_factory=Knobs)
    quota: Window = field(default_factory=lambda: Window(60, 60.0))
    """Requests per minute per user, as the Sheets API's default quotas (read and write alike here)."""

    def add_sheet(self, spreadsheet: str, sheet: str, rows: list[list[str]]) -> None:
        self.spreadsheets.setdefault(spreadsheet, {})[sheet] = rows
        self.shared.add(spreadsheet)

    def app(self) -> Flask:
        app = Flask(__name__)
        app.add_url_rule("/token", view_func=self.auth._token, methods=["POST"])
        app.add_url_rule(
            "/v4/spreadsheets/<spreadsheet>/values/<path:cells>",
            view_func=self._get,
            methods=["GET"],
        )
        app.add_url_rule(
            "/v4/spreadsheets/<spreadsheet>/values:batchUpdate",
            view_func=self._batch_update,
            methods=["POST"],
        )
        return app

    def _refused(self, spreadsheet: str):
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if self.auth.tokens.get(token, 0) < time.time():
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if self.knobs.too_many(request.method, request.path, self.retry_after, self.quota):
            response = _error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Write requests' and "
                "limit 'Write requests per minute per user'",
            )
            response[0].headers["Retry-After"] = str(self.retry_after)
            return response
        if spreadsheet not in self.spreadsheets:
            return _error(404, "NOT_FOUND", "Requested entity was not found.")
        if spreadsheet not in self.shared:
            return _error(403, "PERMISSION_DENIED", "The caller does not have permission")
        return None

    def _get(self, spreadsheet: str, cells: str):
        if refused := self._refused(spreadsheet):
            return refused
        parsed = self._parse(spreadsheet, cells)
        if parsed is None:
            return _error(400, "INVALID_ARGUMENT", f"Unable to parse range: {cells}")
        rows, (top, bottom, left, right) = parsed
        values = [row[left : right + 1] for row in rows[top : bottom + 1]]
        while values and not any(values[-1]):
            values.pop()
        answer = {"range": cells, "majorDimension": "ROWS"}
        return jsonify({**answer, "values": [_trimmed(v) for v in values]} if values else answer)

    def _batch_update(self, spreadsheet: str):
        if refused := self._refused(spreadsheet):
            return refused
        body = request.get_json(silent=True) or {}
        if body.get("valueInputOption") not in ("RAW", "USER_ENTERED"):
            return _error(400, "INVALID_ARGUMENT", "Invalid valueInputOption")
        for item in body.get("data") or []:
            parsed = self._parse(spreadsheet, item["range"])
            if parsed is None:
                return _error(400, "INVALID_ARGUMENT", f"Unable to parse range: {item['range']}")
            rows, (top, _, left, _) = parsed
            for r, line in enumerate(item.get("values") or []):
                while len(rows) <= top + r:
                    rows.append([])
                row = rows[top + r]
                for c, value in enumerate(line):
                    while len(row) <= left + c:
                        row.append("")
                    row[left + c] = value
        self.writes.append(
            {
                item["range"]: (item.get("values") or [[None]])[0][0]
                for item in body.get("data") or []
            }
        )
        self.knobs.after_write("values")
        cells = sum(
            len(line) for item in body.get("data") or [] for line in item.get("values") or []
        )
        return jsonify(
            {
                "spreadsheetId": spreadsheet,
                "totalUpdatedCells": cells,
                "responses": [{"updatedRange": item["range"]} for item in body.get("data") or []],
            }
        )

    def _parse(
        self, spreadsheet: str, cells: str
    ) -> tuple[list[list[str]], tuple[int, int, int, int]] | None:
        """(rows of the sheet, (top, bottom, left, right) zero-based and inclusive); None: not a range of it."""
        match = _RANGE.match(cells)
        rows = self.spreadsheets[spreadsheet].get(match[1].replace("''", "'")) if match else None
        if match is None or rows is None:
            return None
        if match[2]:
            return rows, (int(match[2]) - 1, int(match[3]) - 1, 0, 10_000)
        if match[4]:
            return rows, (0, 100_000, _index(match[4]), _index(match[5]))
        return rows, (int(match[7]) - 1, int(match[7]) - 1, _index(match[6]), _index(match[6]))


def _index(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - 64
    return number - 1


def _trimmed(row: list) -> list:
    row = list(row)
    while row and row[-1] in ("", None):
        row.pop()
    return row


def _error(status: int, reason: str, message: str):
    response = jsonify({"error": {"code": status, "message": message, "status": reason}})
    return response, status
