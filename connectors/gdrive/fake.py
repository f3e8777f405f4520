"""A fake Google Drive v3 for tests and local runs: its OAuth token endpoint (JWT-bearer for service
accounts, with domain-wide delegation only where an admin allowed it; refresh tokens for OAuth clients, each
with the scopes it was granted, and ones that expire), files.get and files.list with appProperties queries
over My Drive and shared drives, and the resumable upload protocol as clients meet it: a session URI, chunks
in multiples of 256 KiB, 308 with a Range header, status queries with ``Content-Range: bytes */total``.
Bytes are committed in whole 256 KiB granules until the last one, as Drive does.

As the real Drive: a service account has no storage quota, so it may create files and folders only in a
shared drive, or as the user it impersonates (``subject``); elsewhere it gets 403 storageQuotaExceeded with
Google's body. An item of a shared drive is found only by a request with ``supportsAllDrives=true``; a
viewer's folder takes no children. docs/platforms.md ("Google Drive") gives the source of each rule.

Fault knobs: 403 userRateLimitExceeded, 5xx, a connection that breaks in the middle of a chunk, a chunk held
before its body is read (``knobs.hold_before("chunk", skip)``, connectors.fake_knobs), and searches of all
drives that come back incomplete. Everything is streamed to disk."""

from __future__ import annotations

import itertools
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, Response, jsonify, request
from google.auth import jwt as google_jwt

from ..fake_knobs import Knobs

GRANULE = 256 * 1024
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
FOLDER_TYPE = "application/vnd.google-apps.folder"
NO_QUOTA = (
    "Service Accounts do not have storage quota. Leverage shared drives "
    "(https://developers.google.com/workspace/drive/api/guides/about-shareddrives), or use OAuth "
    "delegation (http://support.google.com/a/answer/7281227) instead."
)
"""Drive's answer to a service account that creates a file outside a shared drive, word for word."""


@dataclass(frozen=True)
class Grant:
    """Whom an access token speaks for, and what it may do."""

    expires: float
    scopes: frozenset[str]
    service_account: bool = False
    subject: str = ""
    """The user a service account impersonates (domain-wide delegation); empty: itself."""
    user: str = ""
    """Whose quota its calls count against: the service account (one user, however many workers use it),
    the user it impersonates, or the user who granted the refresh token."""

    @property
    def has_no_quota(self) -> bool:
        return self.service_account and not self.subject


@dataclass
class Session:
    upload_id: str
    metadata: dict
    total: int
    path: Path
    committed: int = 0
    file: dict | None = None


@dataclass
class FakeDrive:
    storage: Path
    scope: str = DRIVE_SCOPE
    """The scope a service account's grant must ask for (the fake Sheets asks for its own)."""
    folders: set[str] = field(default_factory=lambda: {"folder-reports"})
    shared_drives: dict[str, str] = field(
        default_factory=lambda: {"folder-reports": "0AReportsSharedDrive"}
    )
    """Folder id -> the id of the shared drive it is in; a folder not here is in someone's My Drive."""
    read_only: set[str] = field(default_factory=set)
    """Folders the credentials may only view (capabilities.canAddChildren false; creating in them is 403)."""
    service_accounts: dict[str, str] = field(default_factory=dict)
    """private_key_id (the JWT's kid) -> public key PEM."""
    delegation: set[str] = field(default_factory=set)
    """Service accounts (client_email) a Workspace admin allowed domain-wide delegation: only they may sign
    in as a ``subject``."""
    oauth_clients: dict[str, tuple[str, str]] = field(default_factory=dict)
    """refresh_token -> (client_id, client_secret)."""
    oauth_scopes: dict[str, set[str]] = field(default_factory=dict)
    """refresh_token -> the scopes the user granted (absent: this fake's ``scope``)."""
    expired_refresh_tokens: set[str] = field(default_factory=set)
    """Refresh tokens Google no longer takes (a Testing app's after 7 days, or revoked): invalid_grant."""
    incomplete_all_drives: bool = False
    """A search of ``corpora=allDrives`` comes back with incompleteSearch and leaves out shared drives."""
    files: dict[str, dict] = field(default_factory=dict)
    folder_items: dict[str, dict] = field(default_factory=dict)
    """Folders made through the API (id -> name, parents); their ids join ``folders``."""
    sessions: dict[str, Session] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    """Access token -> when it expires."""
    grants: dict[str, Grant] = field(default_factory=dict)
    """Access token -> whom it speaks for and its scopes."""
    token_grants: list[str] = field(default_factory=list)
    put_requests: int = 0
    knobs: Knobs = field(default_factory=Knobs)
    _faults: list[int] = field(default_factory=list)
    _break_after: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, count: int, status: int = 403) -> None:
        """The next ``count`` Drive calls answer ``status`` (403 means userRateLimitExceeded)."""
        with self._lock:
            self._faults += [status] * count

    def break_next_upload(self, after_bytes: int) -> None:
        """The next chunk upload reads ``after_bytes`` bytes, then the connection drops."""
        with self._lock:
            self._break_after.append(after_bytes)

    def file_bytes(self, file_id: str) -> bytes:
        return (self.storage / f"file-{file_id}").read_bytes()

    def app(self) -> Flask:
        app = Flask(__name__)
        self.storage.mkdir(parents=True, exist_ok=True)
        app.add_url_rule("/token", view_func=self._token, methods=["POST"])
        app.add_url_rule("/drive/v3/files", view_func=self._list, methods=["GET"])
        app.add_url_rule("/drive/v3/files/<item_id>", view_func=self._get, methods=["GET"])
        app.add_url_rule(
            "/drive/v3/files", view_func=self._create_folder, methods=["POST"], endpoint="create"
        )
        app.add_url_rule("/upload/drive/v3/files", view_func=self._start, methods=["POST"])
        app.add_url_rule(
            "/upload/drive/v3/files", view_func=self._put, methods=["PUT"], endpoint="put"
        )
        return app

    # -- auth ---------------------------------------------------------------------------------------

    def _token(self):
        grant = request.form.get("grant_type", "")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                # google-auth (like Google) addresses the assertion to Google's token endpoint
                claims = google_jwt.decode(
                    request.form.get("assertion", ""),
                    certs=self.service_accounts,
                    audience=[request.base_url, "https://oauth2.googleapis.com/token"],
                )
            except Exception as exc:
                return jsonify({"error": "invalid_grant", "error_description": str(exc)}), 400
            scopes = frozenset(claims.get("scope", "").split())
            if self.scope not in scopes:
                return jsonify({"error": "invalid_scope"}), 400
            subject = str(claims.get("sub") or "")
            if subject and claims.get("iss") not in self.delegation:
                return jsonify(
                    {
                        "error": "unauthorized_client",
                        "error_description": "Client is unauthorized to retrieve access tokens using "
                        "this method, or client not authorized for any of the scopes requested.",
                    }
                ), 401
            issued = Grant(
                time.time() + 3600,
                scopes,
                service_account=True,
                subject=subject,
                user=subject or str(claims.get("iss")),
            )
        elif grant == "refresh_token":
            refresh_token = request.form.get("refresh_token", "")
            client = self.oauth_clients.get(refresh_token)
            if client != (request.form.get("client_id"), request.form.get("client_secret")):
                return jsonify(
                    {"error": "invalid_grant", "error_description": "Token has been revoked."}
                ), 400
            if refresh_token in self.expired_refresh_tokens:
                return jsonify(
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    }
                ), 400
            granted = frozenset(self.oauth_scopes.get(refresh_token, {self.scope}))
            asked = frozenset(request.form.get("scope", "").split())
            if asked - granted:  # "all scopes must be authorized for the refresh token"
                return jsonify({"error": "invalid_scope", "error_description": "Bad Request"}), 400
            issued = Grant(time.time() + 3600, asked or granted, user=f"oauth:{refresh_token}")
        else:
            return jsonify({"error": "unsupported_grant_type"}), 400
        self.token_grants.append(grant)
        token = "ya29.fake-" + secrets.token_urlsafe(16)
        self.tokens[token] = issued.expires
        self.grants[token] = issued
        return jsonify(
            {
                "access_token": token,
                "expires_in": 3600,
                "token_type": "Bearer",
                "scope": " ".join(sorted(issued.scopes)),
            }
        )

    def grant_of(self, token: str) -> Grant | None:
        """The grant behind a live access token (None: unknown or expired)."""
        grant = self.grants.get(token)
        return grant if grant and self.tokens.get(token, 0) >= time.time() else None

    def _caller(self) -> Grant | None:
        return self.grant_of(
            request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        )

    def _denied(self) -> Response | None:
        caller = self._caller()
        if caller is None:
            return _error(401, "authError", "Invalid Credentials")
        if not caller.scopes & {DRIVE_SCOPE, "https://www.googleapis.com/auth/drive.file"}:
            return _error(
                403, "insufficientPermissions", "Request had insufficient authentication scopes."
            )
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault == 403:
            return _error(403, "userRateLimitExceeded", "User Rate Limit Exceeded")
        if fault:
            return _error(fault, "backendError", "Backend Error")
        return None

    def drive_of(self, item_id: str) -> str:
        """The shared drive a folder or file is in ("" for My Drive)."""
        if item_id in self.shared_drives:
            return self.shared_drives[item_id]
        item = self.folder_items.get(item_id) or self.files.get(item_id) or {}
        return str(item.get("driveId") or "")

    def _visible(self, item_id: str) -> bool:
        """A shared drive's items are found only by requests that say they support shared drives."""
        return not self.drive_of(item_id) or request.args.get("supportsAllDrives") == "true"

    def _refused_parent(self, parents: list[str]) -> Response | None:
        """Why the caller may not create an item under ``parents`` (None: it may)."""
        parent = next((p for p in parents if p in self.folders and self._visible(p)), None)
        if parent is None:
            return _error(404, "notFound", f"File not found: {(parents or [''])[0]}.")
        if parent in self.read_only:
            return _error(
                403,
                "insufficientFilePermissions",
                "The user does not have sufficient permissions for this file.",
            )
        caller = self._caller()
        if caller is not None and caller.has_no_quota and not self.drive_of(parent):
            return _error(403, "storageQuotaExceeded", NO_QUOTA, domain="usageLimits")
        return None

    # -- files.get ----------------------------------------------------------------------------------

    def _get(self, item_id: str):
        if denied := self._denied():
            return denied
        if (item_id not in self.folders and item_id not in self.files) or not self._visible(
            item_id
        ):
            return _error(404, "notFound", f"File not found: {item_id}.")
        item = self.files.get(item_id) or self.folder_items.get(item_id) or {}
        answer = {
            "id": item_id,
            "name": item.get("name", item_id),
            "mimeType": item.get("mimeType", FOLDER_TYPE),
            "capabilities": {"canAddChildren": item_id not in self.read_only},
        }
        if drive := self.drive_of(item_id):
            answer["driveId"] = drive
        return jsonify(answer)

    # -- files.list ---------------------------------------------------------------------------------

    def _list(self):
        if denied := self._denied():
            return denied
        corpora, drive = request.args.get("corpora", "user"), request.args.get("driveId", "")
        all_drives = (
            request.args.get("supportsAllDrives") == "true"
            and request.args.get("includeItemsFromAllDrives") == "true"
        )
        if corpora == "drive" and not (drive and all_drives):
            return _error(
                400,
                "invalid",
                "The includeItemsFromAllDrives parameter must be set to true when driveId is set.",
            )
        incomplete = corpora == "allDrives" and self.incomplete_all_drives

        def searched(item: dict) -> bool:
            in_drive = str(item.get("driveId") or "")
            if corpora == "drive":
                return in_drive == drive
            if corpora == "allDrives":
                return not in_drive or (all_drives and not incomplete)
            return not in_drive  # user: My Drive and what is shared with the user

        query = request.args.get("q", "")
        named = re.search(
            r"name = '((?:[^'\\]|\\.)*)' and '([^']+)' in parents and mimeType = '([^']+)'", query
        )
        if named:
            name = re.sub(r"\\(.)", r"\1", named.group(1))
            found = [
                f
                for f in self.folder_items.values()
                if f["name"] == name
                and named.group(2) in f["parents"]
                and f["mimeType"] == named.group(3)
                and searched(f)
            ]
        else:
            match = re.search(r"appProperties has \{ key='([^']+)' and value='([^']+)' \}", query)
            found = [
                f
                for f in self.files.values()
                if (not match or f["appProperties"].get(match.group(1)) == match.group(2))
                and searched(f)
            ]
        answer: dict = {"files": found}
        if incomplete:
            answer["incompleteSearch"] = True
        return jsonify(answer)

    def _create_folder(self):
        """files.create without content: only folders, as the relay makes them."""
        if denied := self._denied():
            return denied
        metadata = request.get_json(silent=True) or {}
        if metadata.get("mimeType") != FOLDER_TYPE or not metadata.get("name"):
            return _error(400, "badRequest", "only folders are created without an upload here")
        if refused := self._refused_parent(list(metadata.get("parents", []))):
            return refused
        folder_id = f"1folder{next(self._ids):06d}"
        with self._lock:
            self.folders.add(folder_id)
            self.folder_items[folder_id] = {
                "id": folder_id,
                "name": metadata["name"],
                "mimeType": FOLDER_TYPE,
                "parents": metadata["parents"],
            }
            if drive := self.drive_of(metadata["parents"][0]):
                self.folder_items[folder_id]["driveId"] = drive
        return jsonify(self.folder_items[folder_id])

    # -- resumable upload ---------------------------------------------------------------------------

    def _start(self):
        if denied := self._denied():
            return denied
        if request.args.get("uploadType") != "resumable":
            return _error(400, "badRequest", "expected uploadType=resumable")
        metadata = request.get_json(silent=True) or {}
        if refused := self._refused_parent(list(metadata.get("parents", []))):
            return refused
        total = int(request.headers.get("X-Upload-Content-Length", "-1"))
        upload_id = secrets.token_urlsafe(12)
        self.sessions[upload_id] = Session(
            upload_id, metadata, total, self.storage / f"session-{upload_id}"
        )
        location = (
            f"{request.host_url}upload/drive/v3/files?uploadType=resumable&upload_id={upload_id}"
        )
        return Response(status=200, headers={"Location": location})

    def _put(self):
        self.put_requests += 1
        session = self.sessions.get(request.args.get("upload_id", ""))
        if session is None:
            return _error(404, "notFound", "Upload session not found or expired")
        match = re.fullmatch(
            r"bytes (\*|(\d+)-(\d+))/(\d+|\*)", request.headers.get("Content-Range", "")
        )
        if not match:
            return _error(400, "badRequest", "Content-Range required")
        if match.group(1) == "*":  # status query
            return self._status(session)
        start, end = int(match.group(2)), int(match.group(3))
        if start != session.committed:
            return _error(400, "badRequest", f"expected the chunk to start at {session.committed}")
        last = end + 1 == session.total
        if not last and (end + 1 - start) % GRANULE:
            return _error(400, "badRequest", "chunk size must be a multiple of 256 KiB")
        self.knobs.before_body("chunk")
        with self._lock:
            break_after = self._break_after.pop(0) if self._break_after else None
        received = 0
        with session.path.open("r+b" if session.path.exists() else "wb") as out:
            out.seek(start)
            while chunk := request.stream.read(min(GRANULE, end + 1 - start - received) or 1):
                if break_after is not None and received + len(chunk) > break_after:
                    # whole granules survive
                    keep = ((start + break_after) // GRANULE) * GRANULE - start
                    out.truncate(start + max(0, keep))
                    session.committed = start + max(0, keep)
                    out.close()
                    self._drop_connection()
                    return Response(status=500)
                out.write(chunk)
                received += len(chunk)
                if start + received > end:
                    break
        session.committed = start + received
        if session.committed < session.total:
            return self._status(session)
        return self._finish(session)

    def _status(self, session: Session):
        if session.file is not None:
            return jsonify(session.file), 200
        headers = {"Range": f"bytes=0-{session.committed - 1}"} if session.committed else {}
        return Response(status=308, headers=headers)

    def _finish(self, session: Session):
        file_id = f"1fake{next(self._ids):06d}"
        session.path.rename(self.storage / f"file-{file_id}")
        metadata = session.metadata
        session.file = {
            "id": file_id,
            "name": metadata.get("name"),
            "parents": metadata.get("parents", []),
            "appProperties": metadata.get("appProperties", {}),
            "size": str(session.total),
            "mimeType": metadata.get("mimeType", "application/octet-stream"),
        }
        if drive := self.drive_of((metadata.get("parents") or [""])[0]):
            session.file["driveId"] = drive
        self.files[file_id] = session.file
        return jsonify(session.file), 200

    @staticmethod
    def _drop_connection() -> None:
        sock = request.environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)


def _error(status: int, reason: str, message: str, domain: str = "global") -> Response:
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": domain, "reason": reason, "message": message}],
        }
    }
    response = jsonify(body)
    response.status_code = status
    return response
