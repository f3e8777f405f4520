"""A fake Dropbox API v2 for tests and local runs, served over HTTPS (the SDK speaks nothing else): the OAuth
token endpoint for refresh tokens (``invalid_grant`` for a revoked one), the content API's upload sessions
and the RPC calls the Dropbox destination makes, with Dropbox's own answers:

- ``upload_session/start``, ``append_v2`` and ``finish``, their arguments in the ``Dropbox-API-Arg``
  header; 409 ``incorrect_offset`` with ``correct_offset`` for an append or finish at the wrong offset,
  ``not_found`` for an unknown or expired session, ``closed``, ``content_hash_mismatch`` for a body whose
  Dropbox content hash is not the one sent; parent folders made by ``finish``;
- write modes ``add`` and ``overwrite``, ``autorename`` (``name (1).xlsx``), and 409 ``path/conflict/file``;
- ``list_folder`` (and ``/continue``) and ``get_metadata``, with ``content_hash`` on every file;
- 401 ``invalid_access_token``, and 429 ``too_many_requests`` with ``retry_after`` and Retry-After;
- scopes per route: a token without the route's scope gets 401 ``missing_scope`` with ``required_scope``;
- ``Dropbox-API-Path-Root``: a namespace the account cannot reach gets 422 ``no_permission``;
- namespace lock contention: a finish that comes while another commit into the same namespace is under way
  (or one ``contend`` asks for) gets ``too_many_write_operations`` in one of its three real forms: 429 with
  ``reason`` and Retry-After (data not taken), 409 ``too_many_write_operations`` and 409
  ``path/too_many_write_operations`` (the data appended to the session first, as the SDK documents);
- a Business team's monthly data-transport limit (``transport_calls``): past it, upload calls get 403
  ``invalid_account_type/feature`` with Dropbox's ``user_message``.

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from flask import Flask, Response, jsonify, request

from ..fake_knobs import Knobs

BLOCK = 4 * 1024 * 1024
ALL_SCOPES = frozenset(
    {"account_info.read", "files.metadata.read", "files.content.write", "files.content.read"}
)
"""What an app with every permission the relay could use gets; ``account_info.read`` every app has."""
ROUTE_SCOPES = {
    "files/upload_session/start": "files.content.write",
    "files/upload_session/append_v2": "files.content.write",
    "files/upload_session/finish": "files.content.write",
    "files/delete_v2": "files.content.write",
    "files/list_folder": "files.metadata.read",
    "files/list_folder/continue": "files.metadata.read",
    "files/get_metadata": "files.metadata.read",
}
"""Each route's scope, as its page in Dropbox's HTTP documentation says ("scope: files.content.write")."""
TRANSPORT_ROUTES = frozenset(
    {"files/upload_session/start", "files/upload_session/append_v2", "files/upload_session/finish"}
)
"""The routes whose documentation says they "count as data transport calls" for Business teams."""
TRANSPORT_SPENT = (
    "Your team has used all of its data transport API calls for the month. Your monthly limit will "
    "reset on the 1st day of every month. If you'd like to move to a plan with unlimited API calls, "
    "please contact sales."
)
"""The user_message of the 403, word for word from dropbox.com/developers/reference/data-transport-limit."""
HOME_NAMESPACE = "1001"


class Contention(StrEnum):
    """The three forms in which Dropbox says a namespace's lock is taken (too_many_write_operations)."""

    RATE_LIMIT = "429"
    """429, reason too_many_write_operations, with Retry-After: the request was not taken."""
    FINISH = "finish"
    """409 UploadSessionFinishError.too_many_write_operations ("You should retry uploading this file")."""
    PATH = "path"
    """409 path/too_many_write_operations: "Data has already been appended to the upload session. Please
    retry with empty data body and updated offset" (UploadSessionFinishError.path)."""


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
    scopes: dict[str, frozenset[str]] = field(default_factory=dict)
    """refresh token -> the scopes the user granted (ALL_SCOPES for a token not named here)."""
    team_namespaces: set[str] = field(default_factory=lambda: {"3235641"})
    """Namespaces the account may name in Dropbox-API-Path-Root besides its home (HOME_NAMESPACE)."""
    transport_calls: int | None = None
    """Data-transport calls left this month for the account's Business team; None: a plan without the limit."""
    contended: list[tuple[str, str, str]] = field(default_factory=list)
    """(namespace, form, path) of every finish refused for namespace lock contention."""
    files: dict[str, dict] = field(default_factory=dict)
    """path_lower -> FileMetadata; the bytes are at storage/{id}."""
    sessions: dict[str, UploadSession] = field(default_factory=dict)
    appends: list[tuple[str, int, int]] = field(default_factory=list)
    """(session, offset, length) of every append or finish accepted with data."""
    retry_after: int = 1
    token_grants: int = 0
    knobs: Knobs = field(default_factory=Knobs)
    url: str = ""
    _tokens: dict[str, frozenset[str]] = field(default_factory=dict)
    _commits: dict[str, threading.Lock] = field(default_factory=dict)
    """A lock per namespace, held while a finish commits (Dropbox's namespace lock)."""
    _contend: list[tuple[Contention, bool]] = field(default_factory=list)
    _contend_every: tuple[int, tuple[Contention, ...]] = (0, ())
    _finishes: int = 0
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

    def contend(self, *forms: Contention, appended: bool = False) -> None:
        """The next finishes meet a taken namespace lock, one per form; ``appended``: a 409 ``finish`` form
        keeps the data it carried (the ``path`` form always does, a 429 never)."""
        with self._lock:
            self._contend += [(form, appended) for form in forms]

    def contend_every(self, every: int, *forms: Contention) -> None:
        """Every ``every``-th finish meets a taken namespace lock, in the forms given in turn."""
        self._contend_every = (every, forms)

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
            ("files/delete_v2", self._delete),
        ]:
            app.add_url_rule(
                f"/2/{route}",
                endpoint=route,
                view_func=self._guarded(route, view),
                methods=["POST"],
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
        granted = self.scopes.get(form["refresh_token"], ALL_SCOPES)
        with self._lock:
            self._tokens[token] = granted
            self.token_grants += 1
        return jsonify(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": 14400,
                "scope": " ".join(sorted(granted)),
            }
        )

    def _guarded(self, route: str, view):
        def guarded():
            granted = self._tokens.get(
                request.headers.get("Authorization", "").removeprefix("Bearer ")
            )
            if granted is None:
                return _auth("invalid_access_token/...", {".tag": "invalid_access_token"})
            if ROUTE_SCOPES[route] not in granted:
                needed = ROUTE_SCOPES[route]
                return _auth(
                    "missing_scope/..",
                    {".tag": "missing_scope", "required_scope": needed},
                )
            namespace = self._namespace()
            if isinstance(namespace, Response):
                return namespace
            if self.knobs.too_many(request.method, request.path, self.retry_after):
                return _rate_limited("too_many_requests", self.retry_after)
            if route in TRANSPORT_ROUTES and (spent := self._transport_spent()):
                return spent
            if route == "files/upload_session/finish":
                return view(namespace)
            return view()

        return guarded

    def _namespace(self) -> str | Response:
        """The namespace a call works in: the home one, or the one Dropbox-API-Path-Root names."""
        header = request.headers.get("Dropbox-API-Path-Root")
        if not header:
            return HOME_NAMESPACE
        root = json.loads(header)
        named = str(root.get("root") or root.get("namespace_id") or HOME_NAMESPACE)
        if root.get(".tag") == "home" or named in self.team_namespaces | {HOME_NAMESPACE}:
            return HOME_NAMESPACE if root.get(".tag") == "home" else named
        response = jsonify(
            {"error_summary": "no_permission/..", "error": {".tag": "no_permission"}}
        )
        response.status_code = 422
        return response

    def _transport_spent(self) -> Response | None:
        with self._lock:
            if self.transport_calls is None:
                return None
            if self.transport_calls > 0:
                self.transport_calls -= 1
                return None
        response = jsonify(
            {
                "error_summary": "invalid_account_type/feature/.",
                "error": {
                    ".tag": "invalid_account_type",
                    "invalid_account_type": {".tag": "feature"},
                },
                "user_message": {"locale": "en", "text": TRANSPORT_SPENT},
            }
        )
        response.status_code = 403
        return response

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

    def _finish(self, namespace: str):
        arg = self._arg()
        cursor, commit = arg.get("cursor") or {}, arg.get("commit") or {}
        found = self._session(cursor, lookup=True)
        if isinstance(found, Response):
            return found
        session_id, session = found
        path, offset = str(commit.get("path") or ""), int(cursor.get("offset", -1))
        with session.lock:
            forced = self._forced_contention()
            if forced and forced[0] is Contention.RATE_LIMIT:  # refused before the body is taken
                self.contended.append((namespace, forced[0], path))
                return _rate_limited("too_many_write_operations", self.retry_after)
            if refused := self._take(session_id, session, offset, arg, lookup=True):
                return refused
            with self._commit(namespace) as taken:
                contention = forced or ((Contention.PATH, True) if taken else None)
                if contention:
                    form, keep = contention
                    self.contended.append((namespace, form, path))
                    if form is Contention.PATH:  # the data stays appended, as documented
                        return _api(
                            "path/too_many_write_operations/..",
                            {".tag": "path", "path": {".tag": "too_many_write_operations"}},
                        )
                    if not keep:
                        self._untake(session_id, session, offset)
                    return _api(
                        "too_many_write_operations/..", {".tag": "too_many_write_operations"}
                    )
                with self._lock:
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

    @contextmanager
    def _commit(self, namespace: str) -> Iterator[bool]:
        """Dropbox's namespace lock, held while a finish commits; yields whether another commit had it."""
        with self._lock:
            lock = self._commits.setdefault(namespace, threading.Lock())
        got = lock.acquire(blocking=False)
        try:
            yield not got
        finally:
            if got:
                lock.release()

    def _forced_contention(self) -> tuple[Contention, bool] | None:
        """The contention ``contend`` or ``contend_every`` asks of this finish, and whether a ``finish``
        form keeps its data."""
        with self._lock:
            self._finishes += 1
            if self._contend:
                return self._contend.pop(0)
            every, forms = self._contend_every
            if every and forms and self._finishes % every == 0:
                return forms[(self._finishes // every - 1) % len(forms)], False
        return None

    def _untake(self, session_id: str, session: UploadSession, offset: int) -> None:
        """Gives back what a refused finish appended: the session is as it was before it."""
        with session.path.open("ab") as out:
            out.truncate(offset)
        self.appends[:] = [a for a in self.appends if a[:2] != (session_id, offset)]
        session.offset = offset

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

    def _delete(self):
        body = request.get_json(silent=True) or {}
        with self._lock:
            meta = self.files.pop(str(body.get("path") or "").lower(), None)
        if meta is None:
            return _api(
                "path_lookup/not_found/..",
                {".tag": "path_lookup", "path_lookup": {".tag": "not_found"}},
            )
        (self.storage / meta["id"].removeprefix("id:")).unlink(missing_ok=True)
        return jsonify({"metadata": meta})

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


def _auth(summary: str, error: dict) -> Response:
    response = jsonify({"error_summary": summary, "error": error})
    response.status_code = 401
    return response


def _rate_limited(reason: str, retry_after: int) -> Response:
    """Dropbox's 429: JSON with the reason (too_many_requests, or too_many_write_operations for namespace
    lock contention) and retry_after, and the Retry-After header (data-ingress-guide)."""
    response = jsonify(
        {
            "error_summary": f"{reason}/..",
            "error": {"reason": {".tag": reason}, "retry_after": retry_after},
        }
    )
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


def _oauth(error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = 400
    return response
