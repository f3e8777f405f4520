"""The check of a Google Sheets connection when it is saved: it signs in with the spreadsheets scope and,
given a record key to try (``check_record_key``), opens that spreadsheet and tab, finds every mapped header
and the key column, and proves it may write by writing one header cell's own value back (nothing changes)."""

from __future__ import annotations

from collections.abc import Callable

from ..base import Check, Delivery, DeliveryError, Environment, Verdict
from ..google_auth import access_token
from .writer import SCOPES, _column_of, _Sheet


def check(target: Delivery, env: Environment, parse_record: Callable[[str], dict]) -> list[Check]:
    credentials = target.config.get("credentials") or {}
    try:
        access_token(credentials, SCOPES, env, force=True)  # a real sign-in, not a kept token
    except DeliveryError as exc:
        return [Check("signs in", Verdict.FAILURE, exc.message, _sign_in_fix(credentials))]
    checks = [Check("signs in", Verdict.PASS, f"signed in with the scope {SCOPES[0]}")]
    record_key = str(target.config.get("check_record_key") or "")
    if not record_key:
        return [
            *checks,
            Check(
                "opens a spreadsheet",
                Verdict.WARNING,
                "no spreadsheet was named to open, so the sheet, its headers and the sharing were "
                "not checked",
                "Give check_record_key (a record key of a row, e.g. sheets:{spreadsheet}/Deals/Deal=42)",
            ),
        ]
    try:
        place = parse_record(record_key)
    except ValueError as exc:
        return [
            *checks,
            Check("opens a spreadsheet", Verdict.FAILURE, str(exc), "Fix check_record_key"),
        ]
    sheet = _Sheet(target, env, place)
    try:
        headers = sheet.headers(fresh=True)
    except DeliveryError as exc:
        return [
            *checks,
            Check("opens the spreadsheet and tab", Verdict.FAILURE, exc.message, _open_fix(place)),
        ]
    checks.append(
        Check("opens the spreadsheet and tab", Verdict.PASS, f"opened the tab {place['sheet']!r}")
    )
    wanted = list((target.config.get("fields") or {}).values())
    if "column" in place:
        wanted.append(place["column"])
    missing = [header for header in dict.fromkeys(wanted) if header not in headers]
    if missing:
        return [
            *checks,
            Check(
                "row 1 has the headers",
                Verdict.FAILURE,
                f"row 1 of {place['sheet']!r} has no column headed {', '.join(map(repr, missing))}",
                "Add those headers to row 1, or change the connection's fields",
            ),
        ]
    checks.append(Check("row 1 has the headers", Verdict.PASS, "every mapped header is in row 1"))
    checks.append(_may_write(sheet, headers, wanted))
    return checks


def _may_write(sheet: _Sheet, headers: list[str], wanted: list[str]) -> Check:
    """Sheets cannot tell whether a write would be taken without one: the first mapped header is written
    back as it is."""
    if not wanted:
        return Check(
            "may write", Verdict.WARNING, "no field is mapped, so nothing would be written"
        )
    cell = f"{sheet.quoted}!{_column_of(headers, wanted[0])}1"
    try:
        sheet.execute(
            lambda values: values.batchUpdate(
                spreadsheetId=sheet.spreadsheet,
                body={
                    "valueInputOption": "RAW",
                    "data": [{"range": cell, "values": [[wanted[0]]]}],
                },
            ),
            write=True,
        )
    except DeliveryError as exc:
        return Check(
            "may write",
            Verdict.FAILURE,
            exc.message,
            "Share the spreadsheet with the credentials' account as an Editor",
        )
    return Check("may write", Verdict.PASS, "wrote a header cell back unchanged")


def _open_fix(place: dict) -> str:
    return (
        f"Check the spreadsheet id and that it has a tab named {place['sheet']!r}; share it with the "
        "credentials' account (a service account's client_email) as an Editor"
    )


def _sign_in_fix(credentials: dict) -> str:
    if credentials.get("type") == "service_account":
        return (
            "Use a current key of the service account, with the Sheets API enabled in its project"
        )
    return f"Sign in again for a new refresh token granting {SCOPES[0]}"
