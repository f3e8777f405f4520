"""A fake HubSpot for tests and local runs, as the relay's client meets it: the OAuth refresh grant, CRM
objects (PATCH with property validation), notes (create with associations, batch read, archive), v4
associations (list, default), and the Files API's multipart upload and archive. Errors have HubSpot's
shape (``status``, ``message``, ``category``). Past 100 calls in 10 s, a 429 with ``policyName`` and
HubSpot's rate-limit headers. Knobs: throttling and a pause after a write (connectors.fake_knobs)."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Flask, jsonify, request

from ..fake_knobs import Knobs, Window

PROPERTIES = {
    "relay_status",
    "relay_error",
    "relay_link",
    "relay_version",
    "relay_credits",
    "relay_updated_at",
}


@dataclass
class FakeHubSpot:
    tokens: set[str] = field(default_factory=lambda: {"pat-na1-test-token"})
    oauth_clients: dict[str, tuple[str, str]] = field(default_factory=dict)
    """refresh_token -> (client_id, client_secret)."""
    records: dict[tuple[str, str], dict] = field(default_factory=dict)
    """(object type, id) -> properties."""
    notes: dict[str, dict] = field(default_factory=dict)
    associations: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(object type, id) -> note ids."""
    files: dict[str, dict] = field(default_factory=dict)
    file_bytes: dict[str, bytes] = field(default_factory=dict)
    writes: list[dict] = field(default_factory=list)
    """The properties of each record update, in order."""
    interval_ms: int = 10_000
    """X-HubSpot-RateLimit-Interval-Milliseconds of a 429, and how long calls are refused after one (tests
    shorten it)."""
    knobs: Knobs = field(default_factory=Knobs)
    burst: Window = field(default_factory=lambda: Window(100, 10.0))
    """Calls a private app may make in any 10 seconds (HubSpot's TEN_SECONDLY_ROLLING limit)."""
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1001))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_record(self, object_type: str, record_id: str) -> None:
        self.records[(object_type, record_id)] = {}

    def notes_on(self, object_type: str, record_id: str) -> list[dict]:
        return [
            self.notes[n]
            for n in sorted(self.associations.get((object_type, record_id), set()))
            if not self.notes[n]["archived"]
        ]

    def app(self) -> Flask:
        app = Flask(__name__)
        app.before_request(self._gate)
        rules = [
            ("/oauth/v1/token", self._token, ["POST"]),
            ("/crm/v3/objects/notes", self._create_note, ["POST"]),
            ("/crm/v3/objects/notes/batch/read", self._read_notes, ["POST"]),
            ("/crm/v3/objects/notes/<note_id>", self._archive_note, ["DELETE"]),
            ("/crm/v3/objects/<object_type>/<record_id>", self._update, ["PATCH"]),
            (
                "/crm/v4/objects/<object_type>/<record_id>/associations/<to_type>",
                self._associated,
                ["GET"],
            ),
            (
                "/crm/v4/objects/notes/<note_id>/associations/default/<to_type>/<to_id>",
                self._associate,
                ["PUT"],
            ),
            ("/files/v3/files", self._upload, ["POST"]),
            ("/files/v3/files/<file_id>", self._archive_file, ["DELETE"]),
        ]
        for path, view, methods in rules:
            app.add_url_rule(path, view_func=view, methods=methods)
        return app

    # -- auth and limits ------------------------------------------------------------------------------

    def _gate(self):
        if self.knobs.too_many(request.method, request.path, self.interval_ms / 1000, self.burst):
            response = _error(
                429,
                "You have reached your ten_secondly_rolling limit.",
                "RATE_LIMIT",
                errorType="RATE_LIMIT",
                policyName="TEN_SECONDLY_ROLLING",
            )
            response.headers.update(
                {
                    "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.interval_ms),
                    "X-HubSpot-RateLimit-Max": "100",
                    "X-HubSpot-RateLimit-Remaining": "0",
                }
            )
            return response
        if request.path == "/oauth/v1/token":
            return None
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token not in self.tokens:
            return _error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                "oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        return None

    def _token(self):
        form = request.form
        if form.get("grant_type") != "refresh_token":
            return jsonify(
                {"status": "BAD_GRANT_TYPE", "message": "grant_type must be refresh_token"}
            ), 400
        if self.oauth_clients.get(form.get("refresh_token", "")) != (
            form.get("client_id"),
            form.get("client_secret"),
        ):
            return jsonify(
                {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}
            ), 400
        token = "CJT-fake-" + secrets.token_urlsafe(12)
        self.tokens.add(token)
        return jsonify(
            {
                "access_token": token,
                "refresh_token": form["refresh_token"],
                "expires_in": 1800,
                "token_type": "bearer",
            }
        )

    # -- CRM records --------------------------------------------------------------------------------

    def _update(self, object_type: str, record_id: str):
        if (object_type, record_id) not in self.records:
            return _error(404, f"resource not found: {object_type} {record_id}", "OBJECT_NOT_FOUND")
        properties = (request.get_json(silent=True) or {}).get("properties") or {}
        unknown = sorted(set(properties) - PROPERTIES)
        if unknown:
            errors = [
                {
                    "isValid": False,
                    "message": f'Property "{name}" does not exist',
                    "error": "PROPERTY_DOESNT_EXIST",
                    "name": name,
                }
                for name in unknown
            ]
            return _error(
                400, f"Property values were not valid: {json.dumps(errors)}", "VALIDATION_ERROR"
            )
        stored = self.records[(object_type, record_id)]
        stored.update(properties)
        self.writes.append(properties)
        return jsonify(_object(record_id, stored))

    # -- notes and associations ---------------------------------------------------------------------

    def _create_note(self):
        body = request.get_json(silent=True) or {}
        properties = body.get("properties") or {}
        with self._lock:
            note_id = str(next(self._ids))
            self.notes[note_id] = {"id": note_id, "properties": properties, "archived": False}
            for association in body.get("associations") or []:
                target = association["to"]["id"]
                object_type = {202: "contacts", 190: "companies", 214: "deals", 228: "tickets"}.get(
                    association["types"][0]["associationTypeId"]
                )
                if (object_type, target) not in self.records:
                    del self.notes[note_id]
                    return _error(400, f"association target {target} not found", "VALIDATION_ERROR")
                self.associations.setdefault((object_type, target), set()).add(note_id)
        self.knobs.after_write("note")
        return jsonify(_object(note_id, properties)), 201

    def _read_notes(self):
        body = request.get_json(silent=True) or {}
        wanted = body.get("properties") or []
        results = [
            _object(n["id"], {k: v for k, v in n["properties"].items() if k in wanted})
            for i in body.get("inputs") or []
            if (n := self.notes.get(i["id"])) and not n["archived"]
        ]
        now = datetime.now(UTC).isoformat()
        return jsonify(
            {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        )

    def _archive_note(self, note_id: str):
        if note_id in self.notes:
            self.notes[note_id]["archived"] = True
        return "", 204

    def _associated(self, object_type: str, record_id: str, to_type: str):
        if (object_type, record_id) not in self.records:
            return _error(404, f"resource not found: {object_type} {record_id}", "OBJECT_NOT_FOUND")
        ids = sorted(
            n
            for n in self.associations.get((object_type, record_id), set())
            if not self.notes[n]["archived"]
        )
        return jsonify(
            {
                "results": [
                    {
                        "toObjectId": int(n),
                        "associationTypes": [
                            {"category": "HUBSPOT_DEFINED", "typeId": 214, "label": None}
                        ],
                    }
                    for n in ids
                ]
            }
        )

    def _associate(self, note_id: str, to_type: str, to_id: str):
        if note_id not in self.notes or (to_type, to_id) not in self.records:
            return _error(404, "resource not found", "OBJECT_NOT_FOUND")
        self.associations.setdefault((to_type, to_id), set()).add(note_id)
        now = datetime.now(UTC).isoformat()
        return jsonify({"status": "COMPLETE", "results": [], "startedAt": now, "completedAt": now})

    # -- files --------------------------------------------------------------------------------------

    def _upload(self):
        upload = request.files.get("file")
        options = json.loads(request.form.get("options") or "{}")
        if upload is None or not (request.form.get("folderPath") or request.form.get("folderId")):
            return _error(400, "file and folderPath or folderId are required", "VALIDATION_ERROR")
        if options.get("access") not in ("PRIVATE", "PUBLIC_NOT_INDEXABLE", "PUBLIC_INDEXABLE"):
            return _error(400, "options.access is required", "VALIDATION_ERROR")
        data = upload.read()
        with self._lock:
            file_id = str(next(self._ids) + 90_000_000)
        name = request.form.get("fileName") or upload.filename
        self.files[file_id] = {
            "id": file_id,
            "name": name,
            "size": len(data),
            "archived": False,
            "path": f"{request.form.get('folderPath', '')}/{name}",
            "access": options["access"],
            "url": f"{request.host_url}hubfs/{file_id}/{name}",
        }
        self.file_bytes[file_id] = data
        self.knobs.after_write("file")
        return jsonify({**self.files[file_id], "createdAt": datetime.now(UTC).isoformat()}), 201

    def _archive_file(self, file_id: str):
        if file_id in self.files:
            self.files[file_id]["archived"] = True
        return "", 204


def _object(object_id: str, properties: dict) -> dict:
    now = datetime.now(UTC).isoformat()
    return {
        "id": object_id,
        "properties": properties,
        "createdAt": now,
        "updatedAt": now,
        "archived": False,
    }


def _error(status: int, message: str, category: str, **extra):
    response = jsonify(
        {
            "status": "error",
            "message": message,
            "correlationId": secrets.token_hex(8),
            "category": category,
            **extra,
        }
    )
    response.status_code = status
    return response
