"""A fake Google Sheets API v4 for tests and local runs: values.get and values.batchUpdate over A1 ranges
(a row ``1:1``, a column ``B:B``, a cell ``B5``) of quoted sheet names, Google's error shape
(``{"error": {"code", "message", "status"}}``), and tokens from the fake Drive's token endpoint with the
spreadsheets (or drive) scope.

Quotas as Sheets has them: 60 reads and, apart, 60 writes a minute per user per project, and 300 of each a
minute per project; a service account is one user, whichever worker calls. Past one: 429 RESOURCE_EXHAUSTED
with Google's body and no Retry-After, which Google does not send. Tests shorten the window
(``window_seconds``) and give the relay the same one. A write past the sheet's grid is 400, as is a
spreadsheet that is an Excel file kept in Drive. Knobs: connectors.fake_knobs. docs/platforms.md ("Google
Sheets") gives the source of each rule."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask import Flask, jsonify, request

from ..fake_knobs import Knobs, Window
from ..gdrive.fake import FakeDrive

SHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"
WRITING_SCOPES = frozenset({SHEETS_SCOPE, "https://www.googleapis.com/auth/drive"})
READING_SCOPES = WRITING_SCOPES | {
    "https://www.googleapis.com/auth/spreadsheets.readonly",
    "https://www.googleapis.com/auth/drive.readonly",
}
_RANGE = re.compile(r"^'((?:[^']|'')+)'!(?:(\d+):(\d+)|([A-Z]+):([A-Z]+)|([A-Z]+)(\d+))$")


@dataclass
class FakeSheets:
    auth: FakeDrive
    """Issues and checks the tokens (its token endpoint, with the spreadsheets scope)."""
    spreadsheets: dict[str, dict[str, list[list[str]]]] = field(default_factory=dict)
    """Spreadsheet id -> sheet name -> rows of cells."""
    shared: set[str] = field(default_factory=set)
    """Spreadsheets the credentials may write to (others answer 403)."""
    viewers: set[str] = field(default_factory=set)
    """Spreadsheets shared with the credentials as a viewer: read, not written (403)."""
    excel: set[str] = field(default_factory=set)
    """Ids of Excel files kept in Drive, which the Sheets API does not open (400 FAILED_PRECONDITION)."""
    grid: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(spreadsheet, sheet) -> (rows, columns) of its grid; a sheet not here has Sheets' new-sheet grid
    (1000 rows, 26 columns). A write outside it is 400."""
    writes: list[dict] = field(default_factory=list)
    """Each batchUpdate's cells: range -> value."""
    knobs: Knobs = field(default_factory=Knobs)
    read_limit: int = 60
    write_limit: int = 60
    """Per minute per user per project (developers.google.com/workspace/sheets/api/limits)."""
    project_limit: int = 300
    """Reads, and writes, per minute per project."""
    window_seconds: float = 60.0
    quota_refusals: list[str] = field(default_factory=list)
    """The quota of each 429 past a limit ("ReadRequestsPerMinutePerUser"...)."""
    _windows: dict[tuple[str, str], Window] = field(default_factory=dict)

    def add_sheet(self, spreadsheet: str, sheet: str, rows: list[list[str]]) -> None:
        self.spreadsheets.setdefault(spreadsheet, {})[sheet] = rows
        self.shared.add(spreadsheet)

    def _window(self, user: str, limit: str) -> Window:
        per_minute = self.project_limit if user == "" else getattr(self, f"{limit}_limit")
        return self._windows.setdefault((user, limit), Window(per_minute, self.window_seconds))

    def _over_quota(self, user: str, write: bool):
        """Count the call against its user's and the project's quota; Google's 429 when past either."""
        what = "write" if write else "read"
        for who, quota in ((user, "PerMinutePerUser"), ("", "PerMinutePerProject")):
            if self._window(who, what).over():
                name = f"{what.title()}Requests{quota}"
                self.quota_refusals.append(name)
                return _quota_exceeded(what, name, self._window(who, what).limit)
        return None

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

    def _refused(self, spreadsheet: str, write: bool = False):
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        caller = self.auth.grant_of(token)
        if caller is None:
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if not caller.scopes & (WRITING_SCOPES if write else READING_SCOPES):
            return _error(
                403, "PERMISSION_DENIED", "Request had insufficient authentication scopes."
            )
        if self.knobs.too_many(request.method, request.path):
            what = "write" if write else "read"
            return _quota_exceeded(
                what, f"{what.title()}RequestsPerMinutePerUser", getattr(self, f"{what}_limit")
            )
        if over := self._over_quota(caller.user, write):
            return over
        if spreadsheet in self.excel:
            return _error(
                400, "FAILED_PRECONDITION", "This operation is not supported for this document"
            )
        if spreadsheet not in self.spreadsheets:
            return _error(404, "NOT_FOUND", "Requested entity was not found.")
        if spreadsheet not in self.shared or (write and spreadsheet in self.viewers):
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
        if refused := self._refused(spreadsheet, write=True):
            return refused
        body = request.get_json(silent=True) or {}
        if body.get("valueInputOption") not in ("RAW", "USER_ENTERED"):
            return _error(400, "INVALID_ARGUMENT", "Invalid valueInputOption")
        for item in body.get("data") or []:
            parsed = self._parse(spreadsheet, item["range"])
            if parsed is None:
                return _error(400, "INVALID_ARGUMENT", f"Unable to parse range: {item['range']}")
            if outside := self._outside_grid(spreadsheet, item):
                return outside
        for item in body.get("data") or []:
            rows, (top, _, left, _) = self._parse(spreadsheet, item["range"])  # type: ignore[misc]
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

    def _outside_grid(self, spreadsheet: str, item: dict):
        """Google's 400 for a write past the sheet's grid (it does not grow the sheet)."""
        match = _RANGE.match(item["range"])
        sheet = match[1].replace("''", "'") if match else ""
        max_rows, max_columns = self.grid.get((spreadsheet, sheet), (1000, 26))
        _, (top, _, left, _) = self._parse(spreadsheet, item["range"])  # type: ignore[misc]
        values = item.get("values") or [[]]
        bottom, right = top + len(values) - 1, left + max(len(line) for line in values) - 1
        if bottom < max_rows and right < max_columns:
            return None
        return _error(
            400,
            "INVALID_ARGUMENT",
            f"Range ({item['range']}) exceeds grid limits. Max rows: {max_rows}, max columns: "
            f"{max_columns}",
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


def _error(status: int, reason: str, message: str, details: list | None = None):
    body: dict = {"code": status, "message": message, "status": reason}
    if details:
        body["details"] = details
    return jsonify({"error": body}), status


def _quota_exceeded(what: str, limit_name: str, limit: int):
    """Sheets' 429, as Google sends it: RESOURCE_EXHAUSTED with an ErrorInfo naming the quota, and no
    Retry-After header."""
    metric = f"{what.title()} requests"
    per_user = " per user" if limit_name.endswith("User") else ""
    message = (
        f"Quota exceeded for quota metric '{metric}' and limit '{metric} per minute{per_user}' of "
        "service 'sheets.googleapis.com' for consumer 'project_number:000000000000'."
    )
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "RATE_LIMIT_EXCEEDED",
        "domain": "googleapis.com",
        "metadata": {
            "service": "sheets.googleapis.com",
            "quota_metric": f"sheets.googleapis.com/{what}_requests",
            "quota_limit": limit_name,
            "quota_limit_value": str(limit),
            "consumer": "projects/000000000000",
            "quota_location": "global",
        },
    }
    help_link = {
        "@type": "type.googleapis.com/google.rpc.Help",
        "links": [
            {
                "description": "Request a higher quota limit.",
                "url": "https://cloud.google.com/docs/quotas/help/request_increase",
            }
        ],
    }
    return _error(429, "RESOURCE_EXHAUSTED", message, [info, help_link])
