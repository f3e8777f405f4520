"""A fake Dropbox API v2 for tests and local runs, served over HTTPS (the SDK speaks nothing else): the OAuth
token endpoint for refresh tokens (``invalid_grant`` for a revoked one), the content API's upload sessions
and the RPC calls the Dropbox destination makes, with Dropbox's own answers:

- ``upload_session/start``, ``append_v2`` and ``finish``, their arguments in the ``Dropbox-API-Arg``
  header; 409 ``incorrect_offset`` with ``correct_offset`` for an append or finish at the wrong offset,
  ``not_found`` for an unknown or expired session, ``closed``, ``content_hash_mismatch`` for a body whose
  Dropbox content hash is not the one sent; parent folders made by ``finish``;
- write modes ``add`` and ``overwrite``, ``autorename`` (``name (1).xlsx``), and 409 ``path/conflict/file``;
- ``list_folder`` (and ``/continue``) and ``get_metadata``, with ``content_hash`` on every file;
- 401 ``invalid_access_token``, and 429 ``too_many_requests`` with ``retry_after`` and Retry-After.

Knobs (connectors.fake_knobs): 429 on demand (and until its Retry-After is over), an append held before its
body is read (``hold_before("append", skip)``), a pause after a finish is committed, and sessions expired at
once. Session bytes are streamed to disk."""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask, Response, jsonify, request

from ..fake_knobs import Knobs

BLOCK = 4 * 1024 * 1024


def content_hash(data: bytes) -> str:
    """Dropbox's content hash: SHA-256 of the SHA-256 digests of each 4 MiB block."""
    return hashlib.sha256(
        b"".join(hashlib.sha256(data[i : i + BLOCK]).digest() for i in range(0, len(data), BLOCK))
    ).hexdigest()


@dataclass
class UploadSession:
    path: Path
    offset: int = 0
    closed: bool = False
    expires: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class FakeDropbox:
    storage: Path
    apps: dict[str, str] = field(default_factory=lambda: {"relayappkey": "relay-app-secret"})
    """app key -> app secret."""
    refresh_tokens: set[str] = field(default_factory=lambda: {"refresh-token-of-ana"})
    files: dict[str, dict] = field(default_factory=dict)
    """path_lower -> FileMetadata; the bytes are at storage/{id}."""
    sessions: dict[str, UploadSession] = field(default_factory=dict)
    appends: list[tuple[str, int, int]] = field(default_factory=list)
    """(session, offset, length) of every append or finish accepted with data."""
    retry_after: int = 1
    token_grants: int = 0
    knobs: Knobs = field(default_factory=Knobs)
    url: str = ""
    _tokens: set[str] = field(default_factory=set)
    _cursors: dict[str, list[dict]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def contents(self) -> dict[str, bytes]:
        """path_display -> bytes of every file."""
        return {
            meta["path_display"]: (self.storage / meta["id"].removeprefix("id:")).read_bytes()
            for meta in self.files.values()
        }

    def put_file(self, path: str, content: bytes) -> dict:
        """A file someone else put there."""
        source = self.storage / f"put-{secrets.token_hex(4)}"
        source.write_bytes(content)
        with self._lock:
            return self._store(path, source, content_hash(content))

    def expire_sessions(self) -> None:
        for session in self.sessions.values():
            session.expires = 0.0

    def app(self) -> Flask:
        app = Flask(__name__)
        self.storage.mkdir(parents=True, exist_ok=True)
        app.add_url_rule("/oauth2/token", view_func=self._token, methods=["POST"])
        for route, view in [
            ("files/upload_session/start", self._start),
            ("files/upload_session/append_v2", self._append),
            ("files/upload_session/finish", self._finish),
            ("files/list_folder", self._list),
            ("files/list_folder/continue", self._list_continue),
            ("files/get_metadata", self._get_metadata),
        ]:
            app.add_url_rule(
                f"/2/{route}", endpoint=route, view_func=self._guarded(view), methods=["POST"]
            )
        return app

    # -- OAuth ------------------------------------------------------------------------------------

    def _token(self):
        form = request.form
        key = form.get("client_id", "")
        if form.get("grant_type") != "refresh_token":
            return _oauth("unsupported_grant_type", "grant_type must be refresh_token")
        if key not in self.apps or form.get("client_secret", self.apps.get(key)) != self.apps[key]:
            return _oauth("invalid_client", "Invalid client_id or client_secret")
        if form.get("refresh_token") not in self.refresh_tokens:
            return _oauth("invalid_grant", "refresh token is invalid or revoked")
        token = "sl." + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
            self.token_grants += 1
        return jsonify({"access_token": token, "token_type": "bearer", "expires_in": 14400})

    def _guarded(self, view):
        def guarded():
            if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self._tokens:
                response = jsonify(
                    {
                        "error_summary": "invalid_access_token/...",
                        "error": {".tag": "invalid_access_token"},
                    }
                )
                response.status_code = 401
                return response
            if self.knobs.too_many(request.method, request.path, self.retry_after):
                reason = {"reason": {".tag": "too_many_requests"}, "retry_after": self.retry_after}
                response = jsonify({"error_summary": "too_many_requests/...", "error": reason})
                response.status_code = 429
                response.headers["Retry-After"] = str(self.retry_after)
                return response
            return view()

        return guarded

    # -- upload sessions ----------------------------------------------------------------------------

    def _arg(self) -> dict:
        return json.loads(request.headers.get("Dropbox-API-Arg") or "{}")

    def _start(self):
        arg = self._arg()
        session_id = "pid_upload_session:" + secrets.token_urlsafe(12)
        session = UploadSession(
            self.storage / f"session-{secrets.token_hex(8)}", expires=time.time() + 7 * 86_400
        )
        self.sessions[session_id] = session
        with session.lock:
            if refused := self._take(session_id, session, 0, arg):
                return refused
            session.closed = bool(arg.get("close"))
        return jsonify({"session_id": session_id})

    def _append(self):
        arg = self._arg()
        cursor = arg.get("cursor") or {}
        found = self._session(cursor)
        if isinstance(found, Response):
            return found
        session_id, session = found
        self.knobs.before_body("append")
        with session.lock:
            if refused := self._take(session_id, session, int(cursor.get("offset", -1)), arg):
                return refused
            session.closed = bool(arg.get("close"))
        return Response("null", mimetype="application/json")

    def _finish(self):
        arg = self._arg()
        cursor, commit = arg.get("cursor") or {}, arg.get("commit") or {}
        found = self._session(cursor, lookup=True)
        if isinstance(found, Response):
            return found
        session_id, session = found
        with session.lock:
            if refused := self._take(
                session_id, session, int(cursor.get("offset", -1)), arg, lookup=True
            ):
                return refused
            with self._lock:
                path = str(commit.get("path") or "")
                mode = commit.get("mode") or {".tag": "add"}
                mode = mode if isinstance(mode, str) else mode.get(".tag", "add")
                existing = self.files.get(path.lower())
                if existing and mode == "add":
                    if not commit.get("autorename"):
                        return _api(
                            "path/conflict/file/",
                            {
                                ".tag": "path",
                                "path": {".tag": "conflict", "conflict": {".tag": "file"}},
                            },
                        )
                    path = self._free_name(path)
                meta = self._store(path, session.path, _hash_file(session.path))
                self.sessions.pop(session_id, None)
        self.knobs.after_write("finish")
        return jsonify(meta)

    def _session(self, cursor: dict, lookup: bool = False):
        session_id = str(cursor.get("session_id") or "")
        session = self.sessions.get(session_id)
        if session is None or session.expires < time.time():
            return _lookup_error("not_found", {".tag": "not_found"}, lookup)
        return session_id, session

    def _take(
        self, session_id: str, session: UploadSession, offset: int, arg: dict, lookup: bool = False
    ):
        """The body at ``offset`` onto the session (all of it, or nothing); an error answer, or None."""
        if session.closed:
            return _lookup_error("closed", {".tag": "closed"}, lookup)
        if offset != session.offset:
            return _lookup_error(
                "incorrect_offset",
                {".tag": "incorrect_offset", "correct_offset": session.offset},
                lookup,
            )
        length = int(request.content_length or 0)
        hasher, written, blocks = _ContentHasher(), 0, None
        try:
            with session.path.open("ab") as out:
                while written < length and (
                    chunk := request.stream.read(min(1 << 20, length - written))
                ):
                    out.write(chunk)
                    hasher.update(chunk)
                    written += len(chunk)
            blocks = hasher.hexdigest()
        except Exception:  # werkzeug raises ClientDisconnected for a body cut short
            written = -1
        sent_hash = arg.get("content_hash")
        if written != length or (sent_hash and length and sent_hash != blocks):
            with session.path.open("ab") as out:
                out.truncate(session.offset)
            if written == length:
                return _lookup_error(
                    "content_hash_mismatch", {".tag": "content_hash_mismatch"}, lookup
                )
            return Response("The request body was cut short", status=400)
        session.offset += length
        if length:
            self.appends.append((session_id, offset, length))
        return None

    # -- files ------------------------------------------------------------------------------------

    def _free_name(self, path: str) -> str:
        folder, _, name = path.rpartition("/")
        stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
        return next(
            candidate
            for n in itertools.count(1)
            if (candidate := f"{folder}/{stem} ({n}){dot}{ext}").lower() not in self.files
        )

    def _store(self, path: str, source: Path, hashed: str) -> dict:
        existing = self.files.get(path.lower())
        file_id = existing["id"] if existing else f"id:a4ayc_80_OEAAAAAAAA{next(self._ids):04d}"
        source.replace(self.storage / file_id.removeprefix("id:"))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = {
            ".tag": "file",
            "name": path.rpartition("/")[2],
            "id": file_id,
            "path_lower": path.lower(),
            "path_display": path,
            "client_modified": now,
            "server_modified": now,
            "rev": secrets.token_hex(8) + "0",
            "size": (self.storage / file_id.removeprefix("id:")).stat().st_size,
            "is_downloadable": True,
            "content_hash": hashed,
        }
        self.files[path.lower()] = meta
        return meta

    def _list(self):
        body = request.get_json(silent=True) or {}
        folder = str(body.get("path") or "").rstrip("/").lower()
        entries = [m for p, m in self.files.items() if p.rpartition("/")[0] == folder]
        if folder and not entries and not any(p.startswith(folder + "/") for p in self.files):
            return _api("path/not_found/", {".tag": "path", "path": {".tag": "not_found"}})
        page, rest = entries[:100], entries[100:]
        cursor = secrets.token_urlsafe(8)
        self._cursors[cursor] = rest
        return jsonify({"entries": page, "cursor": cursor, "has_more": bool(rest)})

    def _list_continue(self):
        body = request.get_json(silent=True) or {}
        rest = self._cursors.pop(str(body.get("cursor")), [])
        page, rest = rest[:100], rest[100:]
        cursor = secrets.token_urlsafe(8)
        self._cursors[cursor] = rest
        return jsonify({"entries": page, "cursor": cursor, "has_more": bool(rest)})

    def _get_metadata(self):
        body = request.get_json(silent=True) or {}
        meta = self.files.get(str(body.get("path") or "").lower())
        return (
            jsonify(meta)
            if meta
            else _api("path/not_found/", {".tag": "path", "path": {".tag": "not_found"}})
        )


def _hash_file(path: Path) -> str:
    hasher = _ContentHasher()
    with path.open("rb") as source:
        while chunk := source.read(BLOCK):
            hasher.update(chunk)
    return hasher.hexdigest()


class _ContentHasher:
    def __init__(self):
        self._blocks: list[bytes] = []
        self._block, self._size = hashlib.sha256(), 0

    def update(self, data: bytes) -> None:
        while data:
            piece, data = data[: BLOCK - self._size], data[BLOCK - self._size :]
            self._block.update(piece)
            self._size += len(piece)
            if self._size == BLOCK:
                self._blocks.append(self._block.digest())
                self._block, self._size = hashlib.sha256(), 0

    def hexdigest(self) -> str:
        blocks = self._blocks + ([self._block.digest()] if self._size else [])
        return hashlib.sha256(b"".join(blocks)).hexdigest()


def _lookup_error(summary: str, error: dict, lookup: bool) -> Response:
    """An upload session error, as append answers it, or wrapped in lookup_failed, as finish does."""
    if lookup:
        return _api(f"lookup_failed/{summary}/", {".tag": "lookup_failed", "lookup_failed": error})
    return _api(f"{summary}/", error)


def _api(summary: str, error: dict) -> Response:
    response = jsonify({"error_summary": summary, "error": error})
    response.status_code = 409
    return response


def _oauth(error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = 400
    return response
