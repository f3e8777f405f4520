"""Airtable writes through pyairtable (connectors.airtable says what and why)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import requests
from pyairtable import Api

from ..base import Delivery, Document, Environment, Outcome, Permanent, Retryable
from ..records import mapped, write_back_of

_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def write(
    delivery: Delivery,
    document: Document | None,
    env: Environment,
    parse_record: Callable[[str], dict[str, str]],
) -> Outcome:
    write_back = write_back_of(delivery, document)
    row = parse_record(write_back.record_key)
    mapping = delivery.config.get("fields") or {}
    api = Api(
        delivery.config["token"],
        endpoint_url=str(env.settings["airtable_api_url"]).rstrip("/"),
        retry_strategy=None,
        timeout=(10, 60),
    )
    api.session = env.settings["session"]()  # no redirect, each connection to a checked address
    api.api_key = delivery.config["token"]  # the header goes on the new session
    table = api.table(row["base"], row["table"])
    fields = mapped(write_back, mapping)
    # Airtable: wait 30 s after a 429
    back_off = float(env.settings.get("airtable_backoff_seconds", 30.0))
    if write_back.completed and document is not None and mapping.get("file"):
        current = (
            _call(back_off, lambda: table.get(row["record"]))["fields"].get(mapping["file"]) or []
        )
        fields[mapping["file"]] = _attachments(
            current, document, delivery.config.get("versions", "replace")
        )
    if fields:
        _call(back_off, lambda: table.update(row["record"], fields, typecast=True))
    return Outcome(
        f"airtable:{row['base']}/{row['table']}/{row['record']} ({write_back.values['status']})",
        row["record"],
    )


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


def _call(back_off: float, request: Any) -> Any:
    """One request; the delivery's pace (shared by every worker, see connectors.airtable) was kept before."""
    try:
        return request()
    except requests.HTTPError as exc:
        raise _classify(exc.response, back_off) from None
    except requests.RequestException as exc:
        raise Retryable(f"Airtable could not be reached: {type(exc).__name__}") from None


def _classify(response: requests.Response | None, back_off: float) -> Exception:
    """Status and Airtable's error type; never its message (no answer's text goes to the tenant)."""
    status = response.status_code if response is not None else 0
    kind = _error_of(response)
    said = f"{status} {kind}".strip()
    if status == 429:
        return Retryable(
            f"Airtable is throttling ({kind or 'RATE_LIMIT_REACHED'}): waiting {back_off:g} s",
            retry_after=back_off,
        )
    if status == 401:
        return Permanent(f"Airtable refused the token ({said})")
    if status == 403:
        return Permanent(f"Airtable: the token cannot write to this base or table ({said})")
    if status == 404:
        return Permanent(f"Airtable: the base, table or record does not exist ({said})")
    if status == 422:
        return Permanent(f"Airtable refused the fields ({said}); check the connection's fields")
    if status >= 500 or status in (408, 409) or status == 0:
        return Retryable(f"Airtable answered {status or 'nothing'}")
    return Permanent(f"Airtable answered {status} {kind}".strip())


def _error_of(response: requests.Response | None) -> str:
    """Airtable's error type, from ``{"error": "NOT_FOUND"}`` or ``{"error": {"type", "message"}}``."""
    try:
        error = response.json().get("error") if response is not None else None
    except (ValueError, AttributeError):
        error = None
    kind = str(error.get("type") or "") if isinstance(error, dict) else str(error or "")
    return kind if _CODE.fullmatch(kind) else ""
