"""A fake HubSpot for tests and local runs, as strict as the real one where a user meets it (the sources are in
docs/platforms.md, "HubSpot"): the OAuth refresh grant and the token-info endpoints; scopes per token, checked
per route, with HubSpot's 403 ``MISSING_SCOPES`` (notes need the contacts scopes, files need ``files``); CRM
objects (PATCH, with each value validated by its property's type: ``INVALID_OPTION``, ``INVALID_DATE``,
``INVALID_INTEGER``, ``INVALID_BOOLEAN``), property definitions, notes (create with associations, batch read,
archive), v4 associations (list, default), and the Files API's multipart upload and archive. Errors have
HubSpot's shape (``status``, ``message``, ``category``, ``errors``). The account's limits per tier (calls per
10 s and per day, shared by every app of the account), with HubSpot's ``X-HubSpot-RateLimit-*`` headers and its
429 body. Knobs: throttling and a pause after a write (connectors.fake_knobs)."""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from flask import Flask, jsonify, request

from ..fake_knobs import Knobs, Window

STANDARD = ("deals", "contacts", "companies", "tickets")
NOTES_READ, NOTES_WRITE = "crm.objects.contacts.read", "crm.objects.contacts.write"
"""The notes API's scopes (HubSpot's notes guide, "Scope requirements")."""


def object_scopes(object_type: str) -> tuple[str, str]:
    """(read, write) scope of a CRM object type: ``crm.objects.deals.read``; a custom object's are
    ``crm.objects.custom.*``."""
    group = object_type if object_type in STANDARD else "custom"
    return f"crm.objects.{group}.read", f"crm.objects.{group}.write"


RECIPE_SCOPES = frozenset(
    {scope for o in (*STANDARD, "custom") for scope in object_scopes(o)} | {"files"}
)
"""What docs/recipes/hubspot.md has a private app ask for (every object's, so any record key works)."""


class Tier(StrEnum):
    """Whose limits the account has: a private app's on Free/Starter, Professional or Enterprise; a public
    (OAuth) app's."""

    STARTER = "starter"
    PROFESSIONAL = "professional"
    ENTERPRISE = "enterprise"
    OAUTH_APP = "oauth_app"


LIMITS = {
    Tier.STARTER: (100, 250_000),
    Tier.PROFESSIONAL: (190, 650_000),
    Tier.ENTERPRISE: (190, 1_000_000),
    Tier.OAUTH_APP: (110, 250_000),
}
"""Calls per 10 seconds (the burst limit) and per day, for each tier."""


@dataclass(frozen=True)
class Property:
    """A property's definition as the properties API gives it: ``type`` string, number, date, datetime,
    enumeration or bool; an enumeration's options as (label, internal value)."""

    name: str
    type: str = "string"
    field_type: str = "text"
    options: tuple[tuple[str, str], ...] = ()
    label: str = ""

    def view(self) -> dict:
        return {
            "name": self.name,
            "label": self.label or self.name,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": "dealinformation",
            "options": [
                {"label": label, "value": value, "displayOrder": n, "hidden": False}
                for n, (label, value) in enumerate(self.options)
            ],
            "hidden": False,
            "modificationMetadata": {"readOnlyValue": False, "archivable": True},
        }


RELAY_PROPERTIES = (
    "relay_status",
    "relay_error",
    "relay_link",
    "relay_version",
    "relay_credits",
    "relay_updated_at",
)
"""The text properties every object of the fake has unless a test defines them otherwise."""


@dataclass
class FakeHubSpot:
    tokens: dict[str, set[str]] = field(
        default_factory=lambda: {"pat-na1-test-token": set(RECIPE_SCOPES)}
    )
    """Each token HubSpot takes, with the scopes its app was granted."""
    oauth_clients: dict[str, tuple[str, str]] = field(default_factory=dict)
    """refresh_token -> (client_id, client_secret); the access tokens it gets have ``oauth_scopes``."""
    oauth_scopes: set[str] = field(default_factory=lambda: set(RECIPE_SCOPES))
    properties: dict[str, dict[str, Property]] = field(default_factory=dict)
    """object type -> its properties by name (an object type not here has RELAY_PROPERTIES as text)."""
    records: dict[tuple[str, str], dict] = field(default_factory=dict)
    """(object type, id) -> properties."""
    notes: dict[str, dict] = field(default_factory=dict)
    associations: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(object type, id) -> note ids."""
    files: dict[str, dict] = field(default_factory=dict)
    file_bytes: dict[str, bytes] = field(default_factory=dict)
    writes: list[dict] = field(default_factory=list)
    """The properties of each record update, in order."""
    tier: Tier = Tier.STARTER
    interval_ms: int = 10_000
    """The burst window (HubSpot's is 10 s; tests shorten it), X-HubSpot-RateLimit-Interval-Milliseconds,
    and how long calls are refused after a 429."""
    calls_per_window: int = 0
    """Calls the account may make in each burst window (0: its tier's; tests scale it with the window)."""
    knobs: Knobs = field(default_factory=Knobs)
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(category, path) of each 4xx other than a 429, in order."""
    hub_id: int = 20211234
    tells_scopes: bool = True
    """False: the token-info endpoints do not know the tokens (as may be so for service keys: unverified)."""
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1001))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        per_window, per_day = LIMITS[self.tier]
        self.calls_per_window = self.calls_per_window or per_window
        self.burst = Window(self.calls_per_window, self.interval_ms / 1000, clock=self.knobs.clock)
        self.daily = Window(per_day, 86_400.0, clock=self.knobs.clock)

    def add_record(self, object_type: str, record_id: str) -> None:
        self.records[(object_type, record_id)] = {}

    def define(self, object_type: str, *properties: Property) -> None:
        """Give ``object_type`` these properties (besides the relay's text ones, unless redefined here)."""
        defined = self.properties.setdefault(
            object_type, {name: Property(name) for name in RELAY_PROPERTIES}
        )
        defined.update({p.name: p for p in properties})

    def grant(self, token: str, scopes: set[str] | frozenset[str] = RECIPE_SCOPES) -> None:
        self.tokens[token] = set(scopes)

    def notes_on(self, object_type: str, record_id: str) -> list[dict]:
        return [
            self.notes[n]
            for n in sorted(self.associations.get((object_type, record_id), set()))
            if not self.notes[n]["archived"]
        ]

    def _defined(self, object_type: str) -> dict[str, Property]:
        return self.properties.get(object_type) or {n: Property(n) for n in RELAY_PROPERTIES}

    def app(self) -> Flask:
        app = Flask(__name__)
        app.before_request(self._gate)
        app.after_request(self._headers)
        rules = [
            ("/oauth/v1/token", self._token, ["POST"]),
            ("/oauth/v1/access-tokens/<token>", self._oauth_token_info, ["GET"]),
            ("/oauth/v2/private-apps/get/access-token-info", self._private_token_info, ["POST"]),
            ("/crm/v3/properties/<object_type>", self._list_properties, ["GET"]),
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

    # -- auth, scopes and limits ----------------------------------------------------------------------

    def _gate(self):
        throttled = self._throttled()
        if throttled is not None:
            return throttled
        if request.path == "/oauth/v1/token" or request.path.startswith("/oauth/v1/access-tokens/"):
            return None
        token = _bearer()
        if token not in self.tokens:
            return self._refuse(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                "oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        needed = _scopes_for(request.method, request.path)
        if needed and not needed & self.tokens[token]:
            return self._refuse(
                403,
                "This app hasn't been granted all required scopes to make this call. Read more about "
                "required scopes here: https://developers.hubspot.com/scopes.",
                "MISSING_SCOPES",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": sorted(needed)},
                    }
                ],
                links={"scopes": "https://developers.hubspot.com/scopes"},
            )
        return None

    def _throttled(self):
        """A 429 when the account is past its burst or daily limit (or a test asked for one)."""
        per_window = self.calls_per_window
        daily = self.daily.over()
        if not daily and not self.knobs.too_many(
            request.method, request.path, self.interval_ms / 1000, self.burst
        ):
            return None
        policy = "DAILY" if daily else "TEN_SECONDLY_ROLLING"
        response = _error(
            429,
            f"You have reached your {policy.lower()} limit.",
            "RATE_LIMIT",
            errorType="RATE_LIMIT",
            policyName=policy,
        )
        response.headers.update(
            {
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.interval_ms),
                "X-HubSpot-RateLimit-Max": str(per_window),
                "X-HubSpot-RateLimit-Remaining": "0",
            }
        )
        return response

    def _headers(self, response):
        """Every answer says the account's limits (429s set theirs already)."""
        per_window, per_day = self.calls_per_window, LIMITS[self.tier][1]
        for name, value in (
            ("X-HubSpot-RateLimit-Interval-Milliseconds", self.interval_ms),
            ("X-HubSpot-RateLimit-Max", per_window),
            ("X-HubSpot-RateLimit-Daily", per_day),
        ):
            response.headers.setdefault(name, str(value))
        return response

    def _refuse(self, status: int, message: str, category: str, **extra):
        self.refused.append((category, request.path))
        return _error(status, message, category, **extra)

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
        self.tokens[token] = set(self.oauth_scopes)
        return jsonify(
            {
                "access_token": token,
                "refresh_token": form["refresh_token"],
                "expires_in": 1800,
                "token_type": "bearer",
            }
        )

    def _oauth_token_info(self, token: str):
        if token not in self.tokens:
            return self._refuse(404, "Token not found", "OBJECT_NOT_FOUND")
        return jsonify(
            {
                "token": token,
                "hub_id": self.hub_id,
                "app_id": 303,
                "user_id": 101,
                "scopes": sorted(self.tokens[token]),
                "token_type": "access",
                "expires_in": 1800,
            }
        )

    def _private_token_info(self):
        token = (request.get_json(silent=True) or {}).get("tokenKey")
        if token not in self.tokens or not self.tells_scopes:
            return self._refuse(400, "invalid token", "VALIDATION_ERROR")
        return jsonify(
            {
                "userId": 101,
                "hubId": self.hub_id,
                "appId": 303,
                "scopes": sorted(self.tokens[token]),
            }
        )

    # -- properties and CRM records -------------------------------------------------------------------

    def _list_properties(self, object_type: str):
        return jsonify({"results": [p.view() for p in self._defined(object_type).values()]})

    def _update(self, object_type: str, record_id: str):
        if (object_type, record_id) not in self.records:
            return self._refuse(
                404, f"resource not found: {object_type} {record_id}", "OBJECT_NOT_FOUND"
            )
        properties = (request.get_json(silent=True) or {}).get("properties") or {}
        defined = self._defined(object_type)
        invalid = [
            problem
            for name, value in sorted(properties.items())
            if (problem := _invalid(defined.get(name), name, value))
        ]
        if invalid:
            return self._refuse(
                400,
                f"Property values were not valid: {json.dumps(invalid)}",
                "VALIDATION_ERROR",
                errors=[
                    {
                        "message": p["message"],
                        "code": p["error"],
                        "context": {"propertyName": [p["name"]]},
                    }
                    for p in invalid
                ],
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
                    return self._refuse(
                        400, f"association target {target} not found", "VALIDATION_ERROR"
                    )
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
            return self._refuse(
                404, f"resource not found: {object_type} {record_id}", "OBJECT_NOT_FOUND"
            )
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
            return self._refuse(404, "resource not found", "OBJECT_NOT_FOUND")
        self.associations.setdefault((to_type, to_id), set()).add(note_id)
        now = datetime.now(UTC).isoformat()
        return jsonify({"status": "COMPLETE", "results": [], "startedAt": now, "completedAt": now})

    # -- files --------------------------------------------------------------------------------------

    def _upload(self):
        upload = request.files.get("file")
        options = json.loads(request.form.get("options") or "{}")
        if upload is None or not (request.form.get("folderPath") or request.form.get("folderId")):
            return self._refuse(
                400, "file and folderPath or folderId are required", "VALIDATION_ERROR"
            )
        if options.get("access") not in ("PRIVATE", "PUBLIC_NOT_INDEXABLE", "PUBLIC_INDEXABLE"):
            return self._refuse(400, "options.access is required", "VALIDATION_ERROR")
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


# -- what each route needs ----------------------------------------------------------------------------

_OBJECT_ROUTE = re.compile(r"^/crm/v(?:3|4)/objects/(?P<object>[a-z]+|\d-\d+)(?:/|$)")


def _scopes_for(method: str, path: str) -> set[str]:
    """The scopes a call needs, any one of which will do (HubSpot lists "one of the following scopes"); an
    empty set: none."""
    if path.startswith("/files/"):
        return {"files"}
    if path.startswith("/crm/v3/objects/notes"):
        return {NOTES_READ} if path.endswith("/batch/read") else {NOTES_WRITE}
    if path.startswith("/crm/v3/properties/"):
        object_type = path.split("/")[4]
        group = object_type if object_type in STANDARD else "custom"
        return {object_scopes(object_type)[0], f"crm.schemas.{group}.read"}
    if path.startswith(
        "/crm/v4/objects/notes/"
    ):  # a note's association to a record: the record's write
        return {object_scopes(path.split("/")[8])[1]}
    found = _OBJECT_ROUTE.match(path)
    if found:
        read, write = object_scopes(found["object"])
        return {read} if method == "GET" else {write}
    return set()


# -- property values ----------------------------------------------------------------------------------

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _invalid(definition: Property | None, name: str, value) -> dict | None:
    """HubSpot's validation result for one value, or None when the property takes it ("" clears any)."""
    if definition is None:
        return _problem(name, value, f'Property "{name}" does not exist', "PROPERTY_DOESNT_EXIST")
    text = "" if value is None else str(value)
    if text == "":
        return None
    kind = definition.type
    if kind == "enumeration":
        allowed = [v for _, v in definition.options]
        chosen = text.split(";") if definition.field_type == "checkbox" else [text]
        if any(v not in allowed for v in chosen):
            return _problem(
                name,
                text,
                f"{text} was not one of the allowed options: [{', '.join(allowed)}]",
                "INVALID_OPTION",
            )
    elif kind == "number":
        try:
            float(text)
        except ValueError:
            return _problem(name, text, f"{text} was not a valid number.", "INVALID_INTEGER")
    elif kind == "bool" and text not in ("true", "false"):
        return _problem(name, text, f"{text} was not a valid boolean.", "INVALID_BOOLEAN")
    elif kind in ("date", "datetime"):
        return _bad_time(name, text, date_only=kind == "date")
    return None


def _bad_time(name: str, text: str, date_only: bool) -> dict | None:
    """A date takes YYYY-MM-DD or epoch milliseconds at midnight UTC; a datetime any ISO 8601 time or epoch
    milliseconds."""
    if date_only and _DATE.match(text):
        return None
    try:
        when = (
            datetime.fromtimestamp(int(text) / 1000, UTC)
            if text.isdigit()
            else datetime.fromisoformat(text.replace("Z", "+00:00"))
        )
    except ValueError:
        return _problem(name, text, f"{text} was not a valid date.", "INVALID_DATE")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if date_only and when.time() != datetime.min.time():
        return _problem(
            name,
            text,
            f"{text} is at {when.strftime('%H:%M:%S.%f')[:-3]} UTC, not midnight!",
            "INVALID_DATE",
        )
    return None


def _problem(name: str, value: str, message: str, error: str) -> dict:
    return {
        "isValid": False,
        "message": message,
        "error": error,
        "name": name,
        "localizedErrorMessage": message,
        "propertyValue": value,
    }


def _bearer() -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()


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
