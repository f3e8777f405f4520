"""Google Sheets writes through google-api-python-client (connectors.sheets says what and why)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import httplib2
import requests
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import build_http

from ..base import Delivery, Document, Environment, Outcome, Permanent, Retryable, Throttled
from ..google_auth import access_token
from ..records import mapped, write_back_of
from ..retry_after import retry_after
from . import quota

SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]
_CODE = re.compile(r"[A-Z_]{1,64}")
TIMEOUT = 60.0


def write(
    delivery: Delivery,
    document: Document | None,
    env: Environment,
    parse_record: Callable[[str], dict[str, str]],
) -> Outcome:
    write_back = write_back_of(delivery, document)
    place = parse_record(write_back.record_key)
    sheet = _Sheet(delivery, env, place)
    headers = sheet.headers()
    row = (
        int(place["row"])
        if "row" in place
        else sheet.find_row(headers, place["column"], place["value"])
    )
    values = mapped(write_back, delivery.config.get("fields") or {})
    link_header = (delivery.config.get("fields") or {}).get("link")
    if (
        link_header in values
        and document is not None
        and delivery.config.get("versions", "replace") == "keep"
    ):
        values[link_header] = _kept_links(sheet.cell(headers, link_header, row), document)
    cells = [
        {"range": f"{sheet.quoted}!{_column_of(headers, header)}{row}", "values": [[_cell(value)]]}
        for header, value in values.items()
    ]
    if cells:
        sheet.execute(
            lambda values: values.batchUpdate(
                spreadsheetId=place["spreadsheet"], body={"valueInputOption": "RAW", "data": cells}
            ),
            write=True,
        )
    return Outcome(
        f"sheets:{place['spreadsheet']}/{place['sheet']} row {row} ({write_back.values['status']})"
    )


class _Sheet:
    def __init__(self, delivery: Delivery, env: Environment, place: dict[str, str]):
        self._delivery, self._env, self._place = delivery, env, place
        self.spreadsheet = place["spreadsheet"]
        self.quoted = "'" + place["sheet"].replace("'", "''") + "'"

    def headers(self, fresh: bool = False) -> list[str]:
        answer = self._kept_values(f"{self.quoted}!1:1", fresh)
        return [str(h).strip() for h in (answer[0] if answer else [])]

    def find_row(self, headers: list[str], column: str, value: str) -> int:
        letter = _column_of(headers, column)
        cells = f"{self.quoted}!{letter}:{letter}"
        for fresh in (False, True):  # a row added since the column was kept is looked for again
            for number, row in enumerate(self._kept_values(cells, fresh), start=1):
                if number > 1 and row and str(row[0]) == value:
                    return number
        raise Permanent(
            f"Google Sheets: no row of {self._place['sheet']} has {value!r} under {column!r}"
        )

    def _kept_values(self, cells: str, fresh: bool = False) -> list[list[Any]]:
        """The cells as read within the last seconds by this process (quota.KEPT_SECONDS), or read now."""
        key = (
            str(self._env.settings["sheets_api_url"]),
            quota.user_of(self._delivery.config["credentials"]),
            self._place["spreadsheet"],
            cells,
        )
        values = None if fresh else quota.kept(key)
        if values is None:
            values = self._values(cells)
            quota.keep(key, values)
        return values

    def cell(self, headers: list[str], header: str, row: int) -> str:
        letter = _column_of(headers, header)
        answer = self._values(f"{self.quoted}!{letter}{row}")
        return str(answer[0][0]) if answer and answer[0] else ""

    def _values(self, cells: str) -> list[list[Any]]:
        answer = self.execute(
            lambda values: values.get(spreadsheetId=self._place["spreadsheet"], range=cells)
        )
        return answer.get("values") or []

    def execute(self, request: Any, write: bool = False) -> Any:
        """``request(values)`` makes a call of the spreadsheets.values resource; it goes in the credential's
        next read (or write) slot, with a token, on an HTTP client of its own (httplib2's are not
        thread-safe, and deliveries run on threads)."""
        credentials = self._delivery.config["credentials"]
        for refresh in (False, True):  # a 401 gets one fresh token
            token = access_token(credentials, SCOPES, self._env, force=refresh)
            call = request(_values_api(str(self._env.settings["sheets_api_url"])))
            call.headers["authorization"] = f"Bearer {token}"
            quota.pace(self._env, credentials, write)
            try:
                return call.execute(http=_PolicyHttp(self._env), num_retries=0)
            except HttpError as exc:
                if exc.resp.status == 401 and not refresh:
                    continue
                raise _classify(exc, quota.window_seconds(self._env)) from None
            except (httplib2.HttpLib2Error, requests.RequestException, OSError) as exc:
                raise Retryable(
                    f"Google Sheets could not be reached: {type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")


class _PolicyHttp:
    """httplib2's ``request()`` over the outbound policy's requests session, for googleapiclient: no redirect
    followed, each connection to an address the policy checked (httplib2 follows redirects, and resolves the
    name again when it connects)."""

    def __init__(self, env: Environment):
        self._session = env.settings["session"](timeout=TIMEOUT)

    def request(self, uri, method="GET", body=None, headers=None, **_):
        with self._session as session:
            answer = session.request(method, uri, data=body, headers=headers)
        info = {name.lower(): value for name, value in answer.headers.items()}
        return httplib2.Response({**info, "status": str(answer.status_code)}), answer.content


@lru_cache(maxsize=8)
def _values_api(endpoint: str) -> Any:
    """The spreadsheets.values resource, made once per process and endpoint: googleapiclient writes each method's
    docstring from the discovery document as it makes a resource, about 0.3 CPU-s every time."""
    service = build_from_document(
        get_static_doc("sheets", "v4"), http=build_http(), client_options={"api_endpoint": endpoint}
    )
    return service.spreadsheets().values()


def _column_of(headers: list[str], header: str) -> str:
    if header not in headers:
        raise Permanent(f"Google Sheets: no column is headed {header!r} in row 1")
    number, letters = headers.index(header) + 1, ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _kept_links(current: str, document: Document) -> str:
    lines = [line for line in current.splitlines() if line.strip()]
    if not any(line.startswith(f"{document.name}: ") for line in lines):
        lines.append(f"{document.name}: {document.link}")
    return "\n".join(lines)


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _classify(exc: HttpError, window: float) -> Exception:
    """Status and Google's error status (``PERMISSION_DENIED``); never its message, but what it means."""
    status = exc.resp.status
    try:
        error = json.loads(exc.content or b"{}").get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = str(error.get("status") or "") if isinstance(error, dict) else ""
    reason = code if _CODE.fullmatch(code) else str(status)
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    if status == 429:  # a quota of the minute: no attempt spent on it
        wait = retry_after(exc.resp.get("retry-after"))
        return Throttled(
            f"Google Sheets quota exceeded ({reason}); waiting for its next minute",
            retry_after=window if wait is None else wait,
        )
    if status == 403 and "scopes" in message:
        return Permanent(
            "Google Sheets: the credentials' token lacks the spreadsheets scope (403 "
            f"{reason}); sign in again granting {SCOPES[0]}"
        )
    if status in (401, 403):
        return Permanent(
            f"Google Sheets refused the credentials or the sheet is not shared with them ({status} "
            f"{reason}); share the spreadsheet with the credentials' account as an Editor"
        )
    if status == 404:
        return Permanent(f"Google Sheets: the spreadsheet does not exist ({reason})")
    if status == 400 and reason == "FAILED_PRECONDITION":
        return Permanent(
            "Google Sheets: the spreadsheet is an Excel file kept in Drive, which the Sheets API does "
            "not write (400 FAILED_PRECONDITION); open it in Sheets and save it as a Google Sheet"
        )
    if status == 400 and "exceeds grid limits" in message:
        return Permanent(
            "Google Sheets: the row or column is past the sheet's grid (400 INVALID_ARGUMENT); add "
            "rows or columns to the sheet, or fix the record key's row"
        )
    if status == 400:
        return Permanent(f"Google Sheets refused the write ({reason})")
    return Retryable(f"Google Sheets answered {status} ({reason})")
