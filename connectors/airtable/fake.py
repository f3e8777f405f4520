"""A fake Airtable Web API for tests and local runs, as strict as Airtable (docs/platforms.md, "Airtable",
gives the source of each rule):

- a record's GET and PATCH (``typecast``), field names checked against the table; attachment fields keep
  earlier attachments by id and take new ones by URL, fetched afterwards from outside, as Airtable does: a
  URL on a private or loopback address is never fetched (``fetch_private`` lets a test's loopback relay be
  reached), and the attachment is dropped;
- single selects: a value that is not an option is refused (``INVALID_MULTIPLE_CHOICE_OPTIONS``), and with
  ``typecast`` made a new option only for a token whose user may create them (``creators``);
- personal access tokens with their scopes, and the metadata API a check reads (whoami, bases, tables);
- the limits: 5 requests a second per base and 50 per token (answered 429 ``RATE_LIMIT_REACHED``, and every
  call for ``back_off_seconds`` after a 429); the monthly calls of the workspace's plan (Free 1,000, Team
  100,000), past which a Free workspace is refused (429 ``PUBLIC_API_BILLING_LIMIT_EXCEEDED``) and a Team
  one is cut to 2 requests a second per base. ``window_seconds`` scales the windows for tests.

Errors have Airtable's shape. Knobs: connectors.fake_knobs."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit

import httpx
from flask import Flask, jsonify, request

from ..fake_knobs import Knobs, Window

READ, WRITE, SCHEMA = "data.records:read", "data.records:write", "schema.bases:read"
ALL_SCOPES = frozenset({READ, WRITE, SCHEMA})


class Plan(Enum):
    """A workspace's plan: its API calls a month (None: no monthly limit), and what happens past them."""

    FREE = ("Free", 1_000)
    TEAM = ("Team", 100_000)
    BUSINESS = ("Business", None)
    ENTERPRISE = ("Enterprise Scale", None)

    @property
    def monthly_calls(self) -> int | None:
        return self.value[1]


PER_BASE, PER_TOKEN, PAST_TEAM_LIMIT = 5, 50, 2
"""Requests a window (a second, unless ``window_seconds`` scales it) per base, per token, and per base for a
Team workspace past its month's calls."""


@dataclass
class FakeAirtable:
    tokens: set[str] = field(default_factory=lambda: {"patTEST.token"})
    scopes: dict[str, set[str]] = field(default_factory=dict)
    """A token's scopes; a token not listed has all of ALL_SCOPES."""
    creators: set[str] = field(default_factory=set)
    """Tokens whose user is a creator of the bases (may add select options); the others are editors."""
    tables: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    """(base, table) -> field name -> type ("text", "number", "attachments", "singleSelect")."""
    options: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    """(base, table, field) -> the choices of a single select."""
    rows: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    """(base, table, record) -> fields."""
    plans: dict[str, Plan] = field(default_factory=dict)
    """A base's workspace plan (each base is a workspace of its own); not listed: ``default_plan``."""
    default_plan: Plan = Plan.FREE
    calls_this_month: dict[str, int] = field(default_factory=dict)
    """Calls to each base's workspace this month (a test sets it to spend the month)."""
    fetched: dict[str, bytes] = field(default_factory=dict)
    """Attachment id -> the bytes fetched from its URL."""
    unfetchable: list[str] = field(default_factory=list)
    """URLs of attachments dropped because Airtable could not reach them."""
    fetch_private: bool = False
    """Fetch attachment URLs on private and loopback addresses too (a test's relay on 127.0.0.1)."""
    writes: list[dict] = field(default_factory=list)
    """The fields of each PATCH, in order."""
    knobs: Knobs = field(default_factory=Knobs)
    back_off_seconds: float = 30.0
    """How long a base refuses calls after a 429 ("you will need to wait 30 seconds before subsequent requests
    will succeed"); tests shorten it with the relay's wait."""
    window_seconds: float = 1.0
    """The length of a rate limit's window (a second; tests shorten it with the relay's pace)."""
    _windows: dict[str, Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_row(self, base: str, table: str, record: str, fields: dict[str, str]) -> None:
        self.tables[(base, table)] = fields
        self.rows[(base, table, record)] = {}

    def plan_of(self, base: str) -> Plan:
        return self.plans.get(base, self.default_plan)

    def app(self) -> Flask:
        app = Flask(__name__)
        app.add_url_rule(
            "/v0/<base>/<table>/<record>", view_func=self._record, methods=["GET", "PATCH"]
        )
        app.add_url_rule("/v0/meta/whoami", view_func=self._whoami)
        app.add_url_rule("/v0/<base>/<table>", view_func=self._list)
        app.add_url_rule("/v0/meta/bases", view_func=self._bases)
        app.add_url_rule("/v0/meta/bases/<base>/tables", view_func=self._tables)
        return app

    # -- the metadata API: not counted against a plan's calls ------------------------------------------

    def _whoami(self):
        if self._token() not in self.tokens:
            return _authentication_required()
        return jsonify({"id": "usr" + "F" * 14})  # scopes only for OAuth tokens, not a PAT's

    def _bases(self):
        if refused := self._meta_refused():
            return refused
        bases = sorted({base for base, _ in self.tables})
        level = "create" if self._token() in self.creators else "edit"
        return jsonify({"bases": [{"id": b, "name": b, "permissionLevel": level} for b in bases]})

    def _tables(self, base: str):
        if refused := self._meta_refused():
            return refused
        tables = [(table, schema) for (b, table), schema in self.tables.items() if b == base]
        if not tables:
            return _not_permitted()
        return jsonify(
            {
                "tables": [
                    {
                        "id": "tbl" + table[:14].ljust(14, "X"),
                        "name": table,
                        "fields": [self._field(base, table, n, t) for n, t in schema.items()],
                    }
                    for table, schema in tables
                ]
            }
        )

    def _field(self, base: str, table: str, name: str, kind: str) -> dict:
        types = {"text": "singleLineText", "attachments": "multipleAttachments"}
        described: dict = {"id": "fld" + name[:14].ljust(14, "X"), "name": name}
        described["type"] = types.get(kind, kind)
        if kind == "singleSelect":
            choices = sorted(self.options.get((base, table, name), set()))
            described["options"] = {"choices": [{"name": c} for c in choices]}
        return described

    def _meta_refused(self):
        token = self._token()
        if token not in self.tokens:
            return _authentication_required()
        if SCHEMA not in self.scopes.get(token, ALL_SCOPES):
            return _not_permitted()
        return None

    # -- records -----------------------------------------------------------------------------------

    def _record(self, base: str, table: str, record: str):
        if refused := self._refused(base):
            return refused
        needed = WRITE if request.method == "PATCH" else READ
        if (base, table) not in self.tables or needed not in self.scopes.get(
            self._token(), ALL_SCOPES
        ):
            return _not_permitted()
        row = self.rows.get((base, table, record))
        if row is None:
            return jsonify({"error": "NOT_FOUND"}), 404
        if request.method == "PATCH":
            body = request.get_json(silent=True) or {}
            fields = body.get("fields") or {}
            if problem := self._write(base, table, row, fields, bool(body.get("typecast"))):
                return problem
            self.writes.append(fields)
            added = any(
                isinstance(v, list) and any("url" in item for item in v) for v in fields.values()
            )
            self.knobs.after_write("attachment" if added else "patch")
        return jsonify({"id": record, "createdTime": "2026-11-01T09:00:00.000Z", "fields": row})

    def _list(self, base: str, table: str):
        """A table's records (maxRecords of them): data.records:read."""
        if refused := self._refused(base):
            return refused
        if (base, table) not in self.tables or READ not in self.scopes.get(
            self._token(), ALL_SCOPES
        ):
            return _not_permitted()
        rows = [(r, f) for (b, t, r), f in self.rows.items() if (b, t) == (base, table)]
        rows = rows[: int(request.args.get("maxRecords") or 100)]
        return jsonify(
            {
                "records": [
                    {"id": r, "createdTime": "2026-11-01T09:00:00.000Z", "fields": f}
                    for r, f in rows
                ]
            }
        )

    def _token(self) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    def _refused(self, base: str):
        token = self._token()
        if token not in self.tokens:
            return _authentication_required()
        plan = self.plan_of(base)
        with self._lock:
            used = self.calls_this_month.get(base, 0)
            spent = plan.monthly_calls is not None and used >= plan.monthly_calls
        if spent and plan is Plan.FREE:
            self.knobs.calls.append((self.knobs.clock(), request.method, request.path))
            return jsonify(
                {
                    "errors": [
                        {
                            "error": "PUBLIC_API_BILLING_LIMIT_EXCEEDED",
                            "message": "API billing plan limit exceeded. You've reached the maximum "
                            "number of requests allowed for this month.",
                        }
                    ]
                }
            ), 429
        per_base = PAST_TEAM_LIMIT if spent else PER_BASE
        limits = [
            self._window(f"base:{base}:{per_base}", per_base),
            self._window(f"token:{token}", PER_TOKEN),
        ]
        over = [window.over() for window in limits]  # each call counts in every window
        if self.knobs.too_many(
            request.method, request.path, self.back_off_seconds, _Over(any(over))
        ):
            return jsonify(
                {
                    "errors": [
                        {
                            "error": "RATE_LIMIT_REACHED",
                            "message": "Rate limit exceeded. Please try again later",
                        }
                    ]
                }
            ), 429
        with self._lock:
            self.calls_this_month[base] = self.calls_this_month.get(base, 0) + 1
        return None

    def _window(self, key: str, limit: int) -> Window:
        with self._lock:
            return self._windows.setdefault(key, Window(limit, self.window_seconds))

    def _write(self, base: str, table: str, row: dict, fields: dict, typecast: bool):
        schema = self.tables[(base, table)]
        for name, value in fields.items():
            if name not in schema:
                return _error(422, "UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
            if schema[name] == "attachments":
                if problem := self._attach(row, name, value):
                    return problem
            elif schema[name] == "singleSelect" and value:
                if problem := self._select(base, table, name, str(value), typecast):
                    return problem
                row[name] = value
            else:
                row[name] = value
        return None

    def _select(self, base: str, table: str, name: str, value: str, typecast: bool):
        """A choice that is not an option: refused, unless ``typecast`` and a creator's token make it one."""
        choices = self.options.setdefault((base, table, name), set())
        if value in choices:
            return None
        if typecast and self._token() in self.creators:
            choices.add(value)
            return None
        return _error(
            422,
            "INVALID_MULTIPLE_CHOICE_OPTIONS",
            f'Insufficient permissions to create new select option ""{value}""',
        )

    def _attach(self, row: dict, name: str, value: list):
        kept = {a["id"]: a for a in row.get(name) or []}
        attachments = []
        for item in value or []:
            if "id" in item and item["id"] in kept:
                attachments.append(kept[item["id"]])
            elif item.get("url"):
                attachment = {
                    "id": "att" + secrets.token_hex(7),
                    "url": item["url"],
                    "filename": item.get("filename") or item["url"].rsplit("/", 1)[-1],
                }
                attachments.append(attachment)
                threading.Thread(
                    target=self._fetch, args=(row, name, attachment), daemon=True
                ).start()
            else:
                return _error(
                    422, "INVALID_ATTACHMENT_OBJECT", f"Invalid attachment object for {name}"
                )
        row[name] = attachments
        return None

    def _fetch(self, row: dict, name: str, attachment: dict) -> None:
        """As Airtable does after the write, from the internet: download the file from its URL, following
        redirects. One Airtable cannot reach is dropped from the field."""
        try:
            if not self.fetch_private and not _public(attachment["url"]):
                raise httpx.ConnectError("not reachable from the internet")
            response = httpx.get(attachment["url"], follow_redirects=True, timeout=30)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:
            self.fetched[attachment["id"]] = response.content
            attachment.update(
                size=len(response.content), type=response.headers.get("content-type", "")
            )
            return
        self.unfetchable.append(attachment["url"])
        row[name] = [a for a in row.get(name) or [] if a is not attachment]


@dataclass
class _Over:
    """A limit already counted (Knobs.too_many asks ``over()`` of its ``limit``)."""

    answer: bool

    def over(self) -> bool:
        return self.answer


def _public(url: str) -> bool:
    """Whether every address of the URL's host is on the internet (Airtable's servers fetch from there)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_global for info in infos)


def _authentication_required():
    return _error(401, "AUTHENTICATION_REQUIRED", "Authentication required")


def _not_permitted():
    return _error(
        403,
        "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
        "Invalid permissions, or the requested model was not found. Check that both your user "
        "and your token have the required permissions, and that the model names and/or ids "
        "are correct.",
    )


def _error(status: int, kind: str, message: str):
    return jsonify({"error": {"type": kind, "message": message}}), status
