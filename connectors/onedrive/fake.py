"""A fake Microsoft Graph for tests and local runs, served over HTTPS (msal speaks nothing else): Microsoft
Entra's OpenID configuration and its client-credentials token endpoint (AADSTS7000215 for a wrong secret),
and the drive API the OneDrive/SharePoint destination uses, as Graph documents it:

- drives by user (``/users/{upn}/drive``), by site (``/sites/{host}:/{path}``, ``/sites/{id}/drives``) and
  by id; items by path (``/root:/{path}``), their children, and folders created with a conflict behavior;
- upload sessions: ``createUploadSession`` answers an ``uploadUrl`` on another path that must be called
  *without* an Authorization header (401 otherwise); fragments in multiples of 320 KiB (the last excepted)
  and at most 60 MiB, each with ``Content-Range``; 202 with ``nextExpectedRanges`` until the last, then 201
  (created) or 200 (replaced) with the driveItem; 416 for a fragment that is not the next expected one;
  ``GET uploadUrl`` for the session's status; 404 itemNotFound for an expired or unknown session;
- ``@microsoft.graph.conflictBehavior`` replace, rename (``name 1.xlsx``) and fail (409 nameAlreadyExists);
- names are case-insensitive: ``Report.xlsx`` and ``report.xlsx`` are one item;
- OneDrive for Business and SharePoint (``business``, the default: app-only sign-in reaches no other drive): an
  upload session is tied to its path, so ``createUploadSession`` for a path whose session is still open answers
  409 nameAlreadyExists, whatever the conflict behavior (OneDrive/onedrive-api-docs#747); a session lives 15
  minutes from its last fragment (``session_seconds``; onedrive-api-docs#1260);
- writes to a drive the app holds no write permission on (``denied_drives``) answer 403 accessDenied;
- a drive's quota (``free_bytes``): 507 at ``createUploadSession`` when its ``fileSize`` is over it, else at
  the last fragment.

Fragments must come in order (Graph also takes them out of order; the relay never sends them so). Knobs
(connectors.fake_knobs): 429 with Retry-After on demand (and until it is over), a fragment held before its body
is read (``hold_before("fragment", skip)``), sessions expired at once, fragments and sessions made whose answer
never comes (the connection breaks), and Graph's other refusals on demand (``refuse``: 507 quotaLimitReached,
423 resourceLocked, 403 accessDenied on ``createUploadSession`` or the last fragment).
Uploaded bytes are streamed to disk."""

from __future__ import annotations

import itertools
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from flask import Flask, Response, jsonify, request

from ..fake_knobs import Knobs

FRAGMENT = 320 * 1024
MAX_FRAGMENT = 60 * 1024 * 1024
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SESSION_SECONDS = 15 * 60

REFUSALS = {
    # learn.microsoft.com/onedrive/developer/rest-api/concepts/errors: 507 "The maximum storage quota has been
    # reached", quotaLimitReached "The user has reached their quota limit"
    507: ("quotaLimitReached", "Insufficient Space Available"),
    # a file checked out or open for editing in SharePoint
    423: ("resourceLocked", "The resource you are attempting to access is locked"),
    # an app without the write permission, or Sites.Selected without a grant on the site
    403: ("accessDenied", "Access denied"),
}


@dataclass
class UploadSession:
    drive: str
    folder: str
    name: str
    conflict: str
    path: Path
    total: int | None = None
    received: int = 0
    expires: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    """One fragment at a time: a late one from a killed client must not interleave with its successor's."""


@dataclass
class FakeGraph:
    storage: Path
    tenant: str = "contoso.onmicrosoft.com"
    apps: dict[str, str] = field(default_factory=lambda: {"relay-app": "app-secret"})
    """client_id -> client secret."""
    drives: dict[str, dict] = field(default_factory=dict)
    """drive id -> {"owner": upn or site id, "name": library name}."""
    sites: dict[str, str] = field(
        default_factory=lambda: {"contoso.sharepoint.com:/sites/ops": "site-ops"}
    )
    """``host:/path`` -> site id."""
    items: dict[tuple[str, str], dict] = field(default_factory=dict)
    """(drive id, path) -> driveItem, with "folder" or "file"; the bytes of a file are at storage/{id}."""
    sessions: dict[str, UploadSession] = field(default_factory=dict)
    drop_answers: int = 0
    """The next this many fragments are taken, and their connection broken before the 202."""
    drop_session_answers: int = 0
    """The next this many upload sessions are made, and their connection broken before the answer."""
    business: bool = True
    """OneDrive for Business / SharePoint: one open upload session per path (409 for a second)."""
    session_seconds: float = SESSION_SECONDS
    """How long an upload session lives after it is made or takes a fragment."""
    denied_drives: set[str] = field(default_factory=set)
    """Drives the app may read but not write (403 accessDenied)."""
    busy_refusals: int = 0
    """How many createUploadSession were answered 409 because another session for the path was open."""
    free_bytes: int | None = None
    """The drive's quota left (None: plenty). A session whose ``fileSize`` is larger is refused 507 before it is
    made; one made without ``fileSize`` is refused at its last fragment."""
    refusing: dict[str, list[int]] = field(default_factory=dict)
    """what ("createUploadSession", "complete") -> the statuses its next calls are refused with (refuse)."""
    retry_after: int = 1
    token_grants: int = 0
    fragments: list[tuple[str, int, int]] = field(default_factory=list)
    """(session, start, end) of every fragment accepted."""
    knobs: Knobs = field(default_factory=Knobs)
    url: str = ""
    _tokens: set[str] = field(default_factory=set)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.drives.setdefault("drive-alice", {"owner": "alice@contoso.com", "name": "OneDrive"})
        self.drives.setdefault("drive-ops-docs", {"owner": "site-ops", "name": "Documents"})
        self.drives.setdefault("drive-ops-reports", {"owner": "site-ops", "name": "Reports"})

    # -- what tests read --------------------------------------------------------------------------

    def files(self, drive: str) -> dict[str, bytes]:
        """path -> bytes of every file in a drive."""
        return {
            path: (self.storage / item["id"]).read_bytes()
            for (d, path), item in self.items.items()
            if d == drive and "file" in item
        }

    def put_file(self, drive: str, path: str, content: bytes) -> dict:
        """A file someone else put there."""
        folder, _, name = path.rpartition("/")
        with self._lock:
            return self._store(drive, folder, name, content=content)

    def refuse(self, what: str, status: int, count: int = 1) -> None:
        """The next ``count`` calls of ``what`` ("createUploadSession", or "complete": the last fragment) are
        answered ``status`` (507, 423 or 403) with Graph's body."""
        with self._lock:
            self.refusing.setdefault(what, []).extend([status] * count)

    def find(self, drive: str, path: str) -> dict | None:
        """The item at ``path``, whatever the case of its letters (OneDrive's names are case-insensitive)."""
        folded = path.casefold()
        return next(
            (i for (d, p), i in list(self.items.items()) if d == drive and p.casefold() == folded),
            None,
        )

    def expire_sessions(self) -> None:
        with self._lock:
            for session in self.sessions.values():
                session.expires = 0.0

    def app(self) -> Flask:
        app = Flask(__name__)
        self.storage.mkdir(parents=True, exist_ok=True)
        app.add_url_rule("/<tenant>/v2.0/.well-known/openid-configuration", view_func=self._openid)
        app.add_url_rule("/<tenant>/oauth2/v2.0/token", view_func=self._token, methods=["POST"])
        app.add_url_rule("/v1.0/users/<user>/drive", view_func=self._user_drive)
        app.add_url_rule("/v1.0/sites/<path:site>", view_func=self._site)
        app.add_url_rule("/v1.0/drives/<drive>", view_func=self._drive)
        app.add_url_rule(
            "/v1.0/drives/<drive>/root/children",
            view_func=self._root_children,
            methods=["GET", "POST"],
        )
        app.add_url_rule(
            "/v1.0/drives/<drive>/root:/<path:rest>",
            view_func=self._by_path,
            methods=["GET", "POST"],
        )
        app.add_url_rule("/v1.0/drives/<drive>/items/<item>", view_func=self._item)
        app.add_url_rule(
            "/upload/<session>", view_func=self._upload, methods=["PUT", "GET", "DELETE"]
        )
        return app

    # -- Entra ------------------------------------------------------------------------------------

    def _openid(self, tenant: str):
        base = f"{self.url}/{tenant}"
        return jsonify(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{self.url}/{tenant}/v2.0",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
            }
        )

    def _token(self, tenant: str):
        form = request.form
        if tenant != self.tenant:
            return _entra(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials" or not str(
            form.get("scope", "")
        ).endswith("/.default"):
            return _entra(
                400, "invalid_request", "AADSTS1002012: The provided value for scope is not valid."
            )
        client = form.get("client_id", "")
        if client not in self.apps:
            return _entra(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client}' "
                "was not found in the directory.",
            )
        if form.get("client_secret") != self.apps[client]:
            return _entra(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the "
                "secret being sent in the request is the client secret value, "
                "not the client secret ID.",
            )
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
            self.token_grants += 1
        return jsonify(
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            }
        )

    # -- drives and items ---------------------------------------------------------------------------

    def _checked(self) -> Response | None:
        """401 without a token this fake gave out, 429 when throttled; None to go on."""
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self._tokens:
            return _graph(401, "InvalidAuthenticationToken", "Access token is empty.")
        return self._throttled()

    def _throttled(self) -> Response | None:
        if self.knobs.too_many(request.method, request.path, self.retry_after):
            response = _graph(429, "activityLimitReached", "The request has been throttled")
            response.headers["Retry-After"] = str(self.retry_after)
            return response
        return None

    def _user_drive(self, user: str):
        return self._checked() or self._drive_of(
            lambda d: d["owner"] == user and d["name"] == "OneDrive", f"user {user}"
        )

    def _site(self, site: str):
        if refused := self._checked():
            return refused
        if ":" in site:  # by path: {hostname}:/{server-relative path}
            site_id, rest = self.sites.get(site.removesuffix(":"), ""), ""
        else:
            site_id, _, rest = site.partition("/")
        if site_id not in self.sites.values():
            return _graph(404, "itemNotFound", "Requested site could not be found")
        if rest == "drives":
            return jsonify(
                {
                    "value": [
                        {"id": d, "name": v["name"], "driveType": "documentLibrary"}
                        for d, v in self.drives.items()
                        if v["owner"] == site_id
                    ]
                }
            )
        if rest == "drive":
            return self._drive_of(
                lambda d: d["owner"] == site_id and d["name"] == "Documents", site
            )
        return jsonify({"id": site_id, "displayName": site_id})

    def _drive(self, drive: str):
        return self._checked() or self._drive_of(lambda d: d is self.drives.get(drive), drive)

    def _drive_of(self, match, what: str):
        for drive_id, drive in self.drives.items():
            if match(drive):
                return jsonify({"id": drive_id, "name": drive["name"], "driveType": "business"})
        return _graph(404, "itemNotFound", f"The drive of {what} could not be found")

    def _root_children(self, drive: str):
        return self._checked() or self._children(drive, "")

    def _by_path(self, drive: str, rest: str):
        if refused := self._checked():
            return refused
        if drive not in self.drives:
            return _graph(404, "itemNotFound", "Drive not found")
        path, _, action = unquote(rest).partition(":/")
        path = path.rstrip(":").strip("/")
        if action == "createUploadSession" and request.method == "POST":
            return self._create_session(drive, path)
        if action == "children":
            return self._children(drive, path)
        item = self.find(drive, path)
        return (
            jsonify(item)
            if item
            else _graph(404, "itemNotFound", "The resource could not be found.")
        )

    def _item(self, drive: str, item: str):
        if refused := self._checked():
            return refused
        found = next(
            (i for (d, _), i in self.items.items() if d == drive and i["id"] == item), None
        )
        return (
            jsonify(found)
            if found
            else _graph(404, "itemNotFound", "The resource could not be found.")
        )

    def _children(self, drive: str, folder: str):
        if folder and "folder" not in (self.find(drive, folder) or {}):
            return _graph(404, "itemNotFound", "The resource could not be found.")
        if request.method == "GET":
            return jsonify(
                {
                    "value": [
                        i
                        for (d, p), i in self.items.items()
                        if d == drive and p.rpartition("/")[0].casefold() == folder.casefold()
                    ]
                }
            )
        body = request.get_json(silent=True) or {}
        name = str(body.get("name") or "")
        if "folder" not in body or not name:
            return _graph(400, "invalidRequest", "A folder needs a name and a folder facet")
        if drive in self.denied_drives:
            return _refusal(403)
        with self._lock:
            existing = self.find(drive, _join(folder, name))
            if existing and body.get("@microsoft.graph.conflictBehavior", "fail") == "fail":
                return _graph(409, "nameAlreadyExists", "The specified item name already exists.")
            item = existing or self._new_item(drive, folder, name, {"folder": {"childCount": 0}})
        return jsonify(item), 201

    # -- upload sessions ----------------------------------------------------------------------------

    def _create_session(self, drive: str, path: str):
        folder, _, name = path.rpartition("/")
        item = (request.get_json(silent=True) or {}).get("item") or {}
        conflict = item.get("@microsoft.graph.conflictBehavior", "fail")
        if folder and "folder" not in (self.find(drive, folder) or {}):
            return _graph(404, "itemNotFound", "The parent folder does not exist.")
        if drive in self.denied_drives:
            return _refusal(403)
        if refused := self._refusing("createUploadSession"):
            return refused
        if self.free_bytes is not None and int(item.get("fileSize") or 0) > self.free_bytes:
            return _refusal(
                507
            )  # "the upload session won't be created" (createUploadSession, Response)
        if conflict == "fail" and self.find(drive, path):
            return _graph(409, "nameAlreadyExists", "The specified item name already exists.")
        session_id = secrets.token_urlsafe(16)
        expires = time.time() + self.session_seconds
        with self._lock:
            if self.business and self._open_session(drive, path):
                # the session is tied to the path in Business, whatever the conflict behavior
                # (OneDrive/onedrive-api-docs#747; the message: microsoft-graph-docs-contrib#412)
                self.busy_refusals += 1
                return _graph(
                    409,
                    "nameAlreadyExists",
                    "A file with the same name is currently being uploaded. Change the filename "
                    "and try to save again.",
                )
            self.sessions[session_id] = UploadSession(
                drive,
                folder,
                item.get("name") or name,
                conflict,
                self.storage / f"session-{session_id}",
                expires=expires,
            )
        if self.drop_session_answers:  # made, then the connection breaks before the answer
            self.drop_session_answers -= 1
            _break_connection()
            return Response(status=500)
        return jsonify(
            {
                "uploadUrl": f"{self.url}/upload/{session_id}",
                "expirationDateTime": _iso(expires),
                "nextExpectedRanges": ["0-"],
            }
        )

    def _open_session(self, drive: str, path: str) -> bool:
        folded, now = path.casefold(), time.time()
        return any(
            s.drive == drive and _join(s.folder, s.name).casefold() == folded and s.expires >= now
            for s in self.sessions.values()
        )

    def _refusing(self, what: str) -> Response | None:
        with self._lock:
            waiting = self.refusing.get(what) or []
            status = waiting.pop(0) if waiting else None
        return _refusal(status) if status else None

    def _upload(self, session: str):
        if "Authorization" in request.headers:
            return _graph(
                401,
                "unauthenticated",
                "The upload URL carries its own authorization: no Authorization "
                "header on uploadUrl requests.",
            )
        if request.method == "PUT":
            self.knobs.before_body("fragment")
        upload = self.sessions.get(session)
        if upload is None or upload.expires < time.time():
            return _graph(404, "itemNotFound", "The upload session was not found or has expired.")
        if request.method == "DELETE":
            self.sessions.pop(session, None)
            return "", 204
        if request.method == "GET":
            return jsonify(_status(upload))
        if refused := self._throttled():
            return refused
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", request.headers.get("Content-Range", ""))
        if not match:
            return _graph(400, "invalidRequest", "Content-Range is missing or malformed")
        start, end, total = (int(g) for g in match.groups())
        length = end + 1 - start
        if length > MAX_FRAGMENT or (end + 1 < total and length % FRAGMENT):
            return _graph(
                400, "invalidRequest", "Fragments must be multiples of 320 KiB and under 60 MiB"
            )
        if end + 1 == total and (refused := self._refusing("complete")):
            _drain(length)  # read, as Graph does, so the connection stays usable
            return refused
        if end + 1 == total and self.free_bytes is not None and total > self.free_bytes:
            _drain(length)
            return _refusal(507)  # "quota limitation being exceeded" (Handle upload errors)
        with upload.lock:
            if start != upload.received or (upload.total not in (None, total)):
                return _graph(
                    416,
                    "invalidRange",
                    "The fragment overlaps one received or is out of order",
                    extra={"nextExpectedRanges": _status(upload)["nextExpectedRanges"]},
                )
            if not _append(upload, length):
                return _graph(
                    400, "invalidRequest", "The fragment was shorter than its Content-Range"
                )
            upload.total, upload.received = total, end + 1
            upload.expires = time.time() + self.session_seconds
            self.fragments.append((session, start, end))
        if upload.received < total:
            if self.drop_answers:  # taken, then the connection breaks before the answer
                self.drop_answers -= 1
                _break_connection()
                return Response(status=500)
            return jsonify(_status(upload)), 202
        return self._complete(session, upload)

    def _complete(self, session: str, upload: UploadSession):
        with self._lock:
            self.sessions.pop(session, None)
            existing = self.find(upload.drive, _join(upload.folder, upload.name))
            if existing and upload.conflict == "fail":
                upload.path.unlink(missing_ok=True)
                return _graph(409, "nameAlreadyExists", "The specified item name already exists.")
            name = upload.name
            if existing and upload.conflict == "rename":
                stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
                name = next(
                    f"{stem} {n}{dot}{ext}"
                    for n in itertools.count(1)
                    if not self.find(upload.drive, _join(upload.folder, f"{stem} {n}{dot}{ext}"))
                )
            item = self._store(upload.drive, upload.folder, name, source=upload.path)
        self.knobs.after_write("complete")
        return jsonify(item), (200 if existing and upload.conflict == "replace" else 201)

    def _store(
        self, drive: str, folder: str, name: str, source: Path | None = None, content: bytes = b""
    ) -> dict:
        item = self.find(drive, _join(folder, name)) or self._new_item(drive, folder, name, {})
        target = self.storage / item["id"]
        if source is not None:
            source.replace(target)
        else:
            target.write_bytes(content)
        item.update(
            {
                "size": target.stat().st_size,
                "lastModifiedDateTime": _iso(time.time()),
                "file": {"mimeType": "application/octet-stream"},
            }
        )
        return item

    def _new_item(self, drive: str, folder: str, name: str, facet: dict) -> dict:
        item_id = f"01ITEM{next(self._ids):06d}"
        now = _iso(time.time())
        item = {
            "id": item_id,
            "name": name,
            "size": 0,
            "createdDateTime": now,
            "lastModifiedDateTime": now,
            "webUrl": f"https://contoso.sharepoint.com/{drive}/{_join(folder, name)}",
            "parentReference": {"driveId": drive, "path": f"/drive/root:/{folder}".rstrip("/")},
            **facet,
        }
        self.items[(drive, _join(folder, name))] = item
        return item


def _append(upload: UploadSession, length: int) -> bool:
    """The request's body onto the session's bytes; all of it, or nothing (a client that went away)."""
    written = 0
    try:
        with upload.path.open("ab") as out:
            while written < length and (
                chunk := request.stream.read(min(1 << 20, length - written))
            ):
                out.write(chunk)
                written += len(chunk)
    except Exception:  # werkzeug raises ClientDisconnected for a body cut short
        written = -1
    if written != length:
        with upload.path.open("ab") as out:
            out.truncate(upload.received)
        return False
    return True


def _drain(length: int) -> None:
    """Read a request's body that is refused, whole."""
    while length > 0 and (chunk := request.stream.read(min(1 << 20, length))):
        length -= len(chunk)


def _break_connection() -> None:
    sock = request.environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        sock.shutdown(socket.SHUT_RDWR)


def _refusal(status: int) -> Response:
    code, message = REFUSALS[status]
    return _graph(status, code, message)


def _status(upload: UploadSession) -> dict:
    return {
        "expirationDateTime": _iso(upload.expires),
        "nextExpectedRanges": [f"{upload.received}-"],
    }


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _graph(status: int, code: str, message: str, extra: dict | None = None) -> Response:
    inner = {"request-id": secrets.token_hex(16), "date": _iso(time.time())[:19]}
    response = jsonify(
        {"error": {"code": code, "message": message, "innerError": inner, **(extra or {})}}
    )
    response.status_code = status
    return response


def _entra(status: int, error: str, description: str) -> Response:
    response = jsonify(
        {
            "error": error,
            "error_description": description,
            "error_codes": [int(re.search(r"AADSTS(\d+)", description).group(1))],
        }
    )  # type: ignore[union-attr]
    response.status_code = status
    return response
