"""Airtable writes through pyairtable (connectors.airtable says what and why)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import requests
from pyairtable import Api

from ..base import Delivery, Document, Environment, Outcome, Permanent, Retryable, Throttled
from ..public_url import private_address
from ..records import mapped, write_back_of
from . import paces

_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
BILLING_LIMIT = "PUBLIC_API_BILLING_LIMIT_EXCEEDED"
SELECT_REFUSED = "INVALID_MULTIPLE_CHOICE_OPTIONS"


def api_for(token: str, env: Environment) -> Api:
    """pyairtable on the outbound policy's session: no redirect, each connection to a checked address, the
    relay's CA file and proxy settings, and a timeout on every call."""
    api = Api(
        token,
        endpoint_url=str(env.settings["airtable_api_url"]).rstrip("/"),
        retry_strategy=None,
        timeout=(10, 60),
    )
    api.session = env.settings["session"]()
    api.api_key = token  # the header goes on the new session
    return api


def write(
    delivery: Delivery,
    document: Document | None,
    env: Environment,
    parse_record: Callable[[str], dict[str, str]],
) -> Outcome:
    write_back = write_back_of(delivery, document)
    row = parse_record(write_back.record_key)
    mapping = delivery.config.get("fields") or {}
    token = delivery.config["token"]
    table = api_for(token, env).table(row["base"], row["table"])
    call = _Caller(env, row["base"], token)
    fields = mapped(write_back, mapping)
    where = f"airtable:{row['base']}/{row['table']}/{row['record']}"
    unreached = ""
    if write_back.completed and document is not None and mapping.get("file"):
        unreached = _unreachable(document.link, env)
        if not unreached:
            current = call(lambda: table.get(row["record"]))["fields"].get(mapping["file"]) or []
            fields[mapping["file"]] = _attachments(
                current, document, delivery.config.get("versions", "replace")
            )
    if fields:
        _update(call, table, row["record"], fields, mapping.get("status", ""))
    note = f"; file not attached: {unreached}" if unreached else ""
    return Outcome(f"{where} ({write_back.values['status']}){note}", row["record"])


def _unreachable(link: str, env: Environment) -> str:
    """Why Airtable could not fetch the file from ``link`` ("" when it can): its host is a private address."""
    if env.settings.get("airtable_private_attachments"):
        return ""
    address = private_address(link)
    if not address:
        return ""
    return (
        f"Airtable fetches attachments from the internet, and the relay's public URL is the private "
        f"address {address}; set RELAY_PUBLIC_URL to an address reachable from the internet"
    )


def _update(call: _Caller, table: Any, record: str, fields: dict, status_field: str) -> None:
    """The PATCH; a status refused by a single select (an editor's token cannot add the option "Failed:
    <reason>") is written again as plain "Failed", the reason being in the error field or nowhere."""
    try:
        call(lambda: table.update(record, fields, typecast=True))
    except _SelectRefused:
        status = str(fields.get(status_field) or "")
        if not status.startswith("Failed: "):
            raise _select_refused(fields) from None
        retry = {**fields, status_field: "Failed"}
        try:
            call(lambda: table.update(record, retry, typecast=True))
        except _SelectRefused:
            raise _select_refused(fields) from None


def _select_refused(fields: dict) -> Permanent:
    return Permanent(
        f"Airtable refused a value of a single-select field ({SELECT_REFUSED}): the token's user may not "
        "add options. Give the field the options Generating, Ready and Failed, or make it a text field"
    )


class _SelectRefused(Exception):
    pass


def _attachments(current: list[dict], document: Document, versions: str) -> list[dict]:
    """The attachment field's new value: the earlier files by id (all of them under keep), and this task's
    file by URL unless an earlier attempt attached it already."""
    earlier = (
        [{"id": a["id"]} for a in current if a.get("filename") != document.name]
        if versions == "keep"
        else []
    )
    mine = [{"id": a["id"]} for a in current if a.get("filename") == document.name][:1]
    return earlier + (mine or [{"url": document.link, "filename": document.name}])


class _Caller:
    """One request at a time, each in a slot of the base's pace and of the token's (shared by every worker)."""

    def __init__(self, env: Environment, base: str, token: str):
        self._env, self._paces = env, paces(base, token, env.settings)
        # Airtable: wait 30 s after a 429
        self._back_off = float(env.settings.get("airtable_backoff_seconds", 30.0))

    def __call__(self, request: Callable[[], Any]) -> Any:
        for pace in self._paces:
            self._env.pace(pace)
        try:
            return request()
        except requests.HTTPError as exc:
            raise _classify(exc.response, self._back_off) from None
        except requests.RequestException as exc:
            raise Retryable(f"Airtable could not be reached: {type(exc).__name__}") from None


def _classify(response: requests.Response | None, back_off: float) -> Exception:
    """Status and Airtable's error type; never its message (no answer's text goes to the tenant)."""
    status = response.status_code if response is not None else 0
    kind = error_of(response)
    said = f"{status} {kind}".strip()
    if status == 429 and kind == BILLING_LIMIT:
        return Permanent(
            f"Airtable: the workspace has spent its plan's API calls for this month ({BILLING_LIMIT}; "
            "the Free plan has 1,000 calls a month, Team 100,000), and Airtable refuses calls until "
            "the month ends. Upgrade the workspace's plan, then replay this delivery"
        )
    if status == 429:
        return Throttled(
            f"Airtable is throttling ({kind or 'RATE_LIMIT_REACHED'}): waiting {back_off:g} s "
            "(past a Team plan's 100,000 calls a month, Airtable takes 2 requests a second per base)",
            retry_after=back_off,
        )
    if status == 401:
        return Permanent(f"Airtable refused the token ({said})")
    if status == 403:
        return Permanent(f"Airtable: the token cannot write to this base or table ({said})")
    if status == 404:
        return Permanent(f"Airtable: the base, table or record does not exist ({said})")
    if status == 422 and kind == SELECT_REFUSED:
        return _SelectRefused()
    if status == 422:
        return Permanent(f"Airtable refused the fields ({said}); check the connection's fields")
    if status >= 500 or status in (408, 409) or status == 0:
        return Retryable(f"Airtable answered {status or 'nothing'}")
    return Permanent(f"Airtable answered {status} {kind}".strip())


def error_of(response: requests.Response | None) -> str:
    """Airtable's error type, from ``{"error": "NOT_FOUND"}``, ``{"error": {"type", "message"}}`` or
    ``{"errors": [{"error": "RATE_LIMIT_REACHED", ...}]}``."""
    try:
        body = response.json() if response is not None else {}
    except (ValueError, AttributeError):
        body = {}
    body = body if isinstance(body, dict) else {}
    error = body.get("error")
    if error is None and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        error = first.get("error") if isinstance(first, dict) else None
    kind = str(error.get("type") or "") if isinstance(error, dict) else str(error or "")
    return kind if _CODE.fullmatch(kind) else ""
