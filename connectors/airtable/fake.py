"""A fake Airtable Web API for tests and local runs: a record's GET and PATCH (``typecast``), with field
names checked against the table, attachment fields that keep earlier attachments by id and take new ones
by URL (fetched afterwards, as Airtable does), personal access tokens, and the limit of 5 requests per
second per base, answered 429 past it (and every call for ``back_off_seconds`` after a 429). Errors have
Airtable's shape. Knobs: connectors.fake_knobs."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

import httpx
from flask import Flask, jsonify, request

from ..fake_knobs import Knobs, Window


@dataclass
class FakeAirtable:
    tokens: set[str] = field(default_factory=lambda: {"patTEST.token"})
    tables: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    """(base, table) -> field name -> type ("text", "number", "attachments")."""
    rows: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    """(base, table, record) -> fields."""
    fetched: dict[str, bytes] = field(default_factory=dict)
    """Attachment id -> the bytes fetched from its URL."""
    writes: list[dict] = field(default_factory=list)
    """The fields of each PATCH, in order."""
    knobs: Knobs = field(default_factory=Knobs)
    back_off_seconds: float = 30.0
    """How long a base refuses calls after a 429 ("you will need to wait 30 seconds before subsequent requests
    will succeed"); tests shorten it with the relay's wait."""
    _per_base: dict[str, Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_row(self, base: str, table: str, record: str, fields: dict[str, str]) -> None:
        self.tables[(base, table)] = fields
        self.rows[(base, table, record)] = {}

    def app(self) -> Flask:
        app = Flask(__name__)
        app.add_url_rule(
            "/v0/<base>/<table>/<record>", view_func=self._record, methods=["GET", "PATCH"]
        )
        return app

    def _record(self, base: str, table: str, record: str):
        if refused := self._refused(base):
            return refused
        if (base, table) not in self.tables:
            return _error(
                403,
                "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
                "Invalid permissions, or the requested model was not found. Check that both your user "
                "and your token have the required permissions, and that the model names and/or ids "
                "are correct.",
            )
        row = self.rows.get((base, table, record))
        if row is None:
            return jsonify({"error": "NOT_FOUND"}), 404
        if request.method == "PATCH":
            body = request.get_json(silent=True) or {}
            if problem := self._write(base, table, row, body.get("fields") or {}):
                return problem
            self.writes.append(body.get("fields") or {})
            added = any(
                isinstance(v, list) and any("url" in item for item in v)
                for v in (body.get("fields") or {}).values()
            )
            self.knobs.after_write("attachment" if added else "patch")
        return jsonify({"id": record, "createdTime": "2026-11-01T09:00:00.000Z", "fields": row})

    def _refused(self, base: str):
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token not in self.tokens:
            return _error(401, "AUTHENTICATION_REQUIRED", "Authentication required")
        with self._lock:
            window = self._per_base.setdefault(base, Window(5, 1.0))
        if self.knobs.too_many(request.method, request.path, self.back_off_seconds, window):
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
        return None

    def _write(self, base: str, table: str, row: dict, fields: dict):
        schema = self.tables[(base, table)]
        for name, value in fields.items():
            if name not in schema:
                return _error(422, "UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
            if schema[name] == "attachments":
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
                            target=self._fetch, args=(attachment,), daemon=True
                        ).start()
                    else:
                        return _error(
                            422,
                            "INVALID_ATTACHMENT_OBJECT",
                            f"Invalid attachment object for {name}",
                        )
                row[name] = attachments
            else:
                row[name] = value
        return None

    def _fetch(self, attachment: dict) -> None:
        """As Airtable does after the write: download the file from its URL, following redirects."""
        try:
            response = httpx.get(attachment["url"], follow_redirects=True, timeout=30)
        except httpx.HTTPError:
            return
        if response.status_code == 200:
            self.fetched[attachment["id"]] = response.content
            attachment.update(
                size=len(response.content), type=response.headers.get("content-type", "")
            )


def _error(status: int, kind: str, message: str):
    return jsonify({"error": {"type": kind, "message": message}}), status
