"""The check of an Airtable connection (Kind.check): the token signs in, reaches a base whose table has every
mapped field (the file field an attachment field), may write there and read its records, the status
field takes the relay's statuses, and Airtable can fetch attachments from the relay's public URL. A
connection names no base (each record key does), so the fields are looked for in every base the token
reaches, through the metadata API (the token's schema.bases:read scope)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base import Check, Delivery, DeliveryError, Environment, Permanent, Verdict
from ..public_url import private_address
from ..records import STATUS
from .writer import BILLING_LIMIT, _Caller, api_for

_TOKENS = "airtable.com/create/tokens"
_STATUSES = [*STATUS.values(), "Failed"]


@dataclass(frozen=True)
class _Table:
    base: str
    name: str
    permission: str
    fields: dict[str, dict[str, Any]]
    """Field name -> its description (type, options)."""


def check(target: Delivery, env: Environment) -> list[Check]:
    config = target.config
    token, mapping = config["token"], config.get("fields") or {}
    api = api_for(token, env)
    checks = [_public_url(mapping, env)] if mapping.get("file") else []
    try:
        _caller(env, "meta", token)(lambda: api.get(api.build_url("meta/whoami")))
    except DeliveryError as exc:
        return [
            Check("signs in", Verdict.FAILURE, exc.message, f"Make a new token at {_TOKENS}."),
            *checks,
        ]
    checks.insert(0, Check("signs in", Verdict.PASS, "Airtable took the token."))
    try:
        tables = _tables(api, env, token)
    except Permanent:
        return [
            *checks,
            Check(
                "the fields exist",
                Verdict.WARNING,
                "The token cannot read the bases' schema (no schema.bases:read scope), so the "
                "fields could not be checked; deliveries do not need it.",
                f"Add the scope schema.bases:read to the token at {_TOKENS} to have them checked.",
            ),
        ]
    if not tables:
        return [
            *checks,
            Check(
                "reaches a base",
                Verdict.FAILURE,
                "The token reaches no base.",
                f"Add the base to the token's access at {_TOKENS}.",
            ),
        ]
    wanted = [name for name in mapping.values() if name]
    best = max(tables, key=lambda t: sum(name in t.fields for name in wanted))
    missing = [name for name in wanted if name not in best.fields]
    where = f"table {best.name} of base {best.base}"
    if missing:
        return [
            *checks,
            Check(
                "the fields exist",
                Verdict.FAILURE,
                f"No table the token reaches has the fields {', '.join(missing)} (closest: {where}).",
                "Add the fields to the table, or change the connection's field names.",
            ),
        ]
    checks.append(Check("the fields exist", Verdict.PASS, f"Every mapped field is in {where}."))
    checks += [_writable(best), _records(api, env, token, best), *_field_types(best, mapping)]
    return checks


def _caller(env: Environment, base: str, token: str) -> _Caller:
    return _Caller(env, base, token)


def _tables(api: Any, env: Environment, token: str) -> list[_Table]:
    bases = _caller(env, "meta", token)(lambda: api.get(api.build_url("meta/bases")))
    found = []
    for base in bases.get("bases") or []:
        url = api.build_url("meta/bases", base["id"], "tables")
        for table in _caller(env, base["id"], token)(lambda url=url: api.get(url))["tables"]:
            fields = {field["name"]: field for field in table.get("fields") or []}
            found.append(_Table(base["id"], table["name"], base.get("permissionLevel", ""), fields))
    return found


def _writable(table: _Table) -> Check:
    if table.permission in ("edit", "create"):
        return Check(
            "may write to the base",
            Verdict.PASS,
            f"The token's user may {table.permission} in base {table.base} (the token's own scope "
            "data.records:write shows on the first write: Airtable lists a token's scopes only for OAuth).",
        )
    return Check(
        "may write to the base",
        Verdict.FAILURE,
        f"The token's user may only {table.permission or 'read'} in base {table.base}.",
        "Make the user an editor of the base, or use a token of a user who is.",
    )


def _records(api: Any, env: Environment, token: str, table: _Table) -> Check:
    url = api.build_url(table.base, table.name)
    try:
        _caller(env, table.base, token)(lambda: api.get(url, params={"maxRecords": 1}))
    except DeliveryError as exc:
        spent = BILLING_LIMIT in exc.message
        return Check(
            "reads records",
            Verdict.FAILURE,
            exc.message,
            "Upgrade the workspace's plan, or wait for the month to end."
            if spent
            else f"Give the token the scopes data.records:read and data.records:write at {_TOKENS}.",
        )
    return Check("reads records", Verdict.PASS, f"The token reads the records of {table.name}.")


def _field_types(table: _Table, mapping: dict[str, str]) -> list[Check]:
    checks = []
    file_field = table.fields.get(mapping.get("file") or "")
    if file_field is not None and file_field.get("type") != "multipleAttachments":
        checks.append(
            Check(
                "the file field takes attachments",
                Verdict.FAILURE,
                f"The field {file_field['name']} is a {file_field.get('type')} field.",
                "Map the file to an attachment field.",
            )
        )
    status = table.fields.get(mapping.get("status") or "")
    if status is not None and status.get("type") == "singleSelect":
        choices = {c.get("name") for c in (status.get("options") or {}).get("choices") or []}
        lacking = [s for s in _STATUSES if s not in choices]
        if lacking and table.permission != "create":
            checks.append(
                Check(
                    "the status field takes the statuses",
                    Verdict.WARNING,
                    f"The single select {status['name']} lacks the options {', '.join(lacking)}, and "
                    "the token's user may not add options (only a base's creators may).",
                    f"Add the options {', '.join(_STATUSES)} to the field, or make it a text field.",
                )
            )
    return checks


def _public_url(mapping: dict[str, str], env: Environment) -> Check:
    """A2: Airtable fetches the file from the relay's public URL, from the internet."""
    public_url = str(env.settings.get("public_url") or "")
    address = (
        "" if env.settings.get("airtable_private_attachments") else private_address(public_url)
    )
    if address:
        return Check(
            "Airtable can fetch the file",
            Verdict.WARNING,
            f"RELAY_PUBLIC_URL ({public_url}) is the private address {address}: Airtable fetches "
            "attachments from the internet, so the file would never reach the field "
            f"{mapping['file']} (docs/platforms.md, Airtable, A2). The other fields are written.",
            "Set RELAY_PUBLIC_URL to an address reachable from the internet, or leave the file "
            "field out of the connection.",
        )
    return Check(
        "Airtable can fetch the file",
        Verdict.PASS,
        f"RELAY_PUBLIC_URL ({public_url}) is not a private address.",
    )
