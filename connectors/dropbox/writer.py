"""Dropbox writes through the official SDK (connectors.dropbox says what and why)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from typing import Any

import requests

from .. import naming
from ..base import (
    Check,
    ChunkReader,
    Delivery,
    Document,
    Environment,
    Outcome,
    Permanent,
    Retryable,
    Throttled,
)
from .sdk import HOST_API, HOST_CONTENT, HOST_NOTIFY, Union, dropbox, exceptions, files

MIB = 1024 * 1024
# Dropbox's content hash works in 4 MiB blocks; every chunk but the last is a multiple of it
BLOCK = 4 * MIB
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def check(target: Delivery, env: Environment) -> list[Check]:
    """What a delivery needs, checked without delivering (connectors.dropbox.check)."""
    from .check import check as run  # it uses this module's calls and errors

    return run(target, env)


def find_existing(delivery: Delivery, env: Environment) -> Outcome | None:
    state = delivery.state
    if not state.get("content_hash"):
        return None  # no attempt reached its last chunk: no file of ours can be there
    folder, name = state["path"].rpartition("/")[::2]
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    named = re.compile(rf"{re.escape(stem)}( \(\d+\))?{re.escape(dot + ext)}", re.IGNORECASE)
    for entry in _listing(_client(delivery, env), folder):
        if (
            isinstance(entry, files.FileMetadata)
            and named.fullmatch(entry.name)
            and entry.content_hash == state["content_hash"]
        ):
            return _outcome(entry)
    return None


def deliver(delivery: Delivery, document: Document, env: Environment) -> Outcome:
    if document.size is None:
        raise Retryable("the document's size is unknown")
    dbx, state = _client(delivery, env), dict(delivery.state)
    chunk = max(1, int(delivery.config.get("chunk_mb") or 4) // 4) * BLOCK
    for _ in range(2):  # a session Dropbox forgot starts over, once per attempt
        if not state.get("session"):
            state = _begin(dbx, delivery, document, env)
        try:
            return _outcome(_upload(dbx, delivery, document, env, state, chunk))
        except _SessionGone:
            state = {}
    raise Retryable("Dropbox's upload session expired twice in one attempt")


def _begin(dbx: Any, delivery: Delivery, document: Document, env: Environment) -> dict:
    folder = naming.folder(delivery, document, rules=naming.WINDOWS)
    name = naming.file_name(delivery, document, naming.WINDOWS)
    session = _call(lambda: dbx.files_upload_session_start(b"")).session_id
    state = {
        "session": session,
        "path": f"/{folder}/{name}" if folder else f"/{name}",
        "offset": 0,
        "blocks": [],
    }
    env.save_state(delivery.delivery_id, state)
    return state


def _upload(
    dbx: Any, delivery: Delivery, document: Document, env: Environment, state: dict, chunk: int
):
    """Appends from the saved offset, then finishes with the last chunk; saves offset and block hashes after
    each append, and the whole file's content hash before the finish (find_existing looks for it)."""
    total, offset = document.size or 0, int(state["offset"])
    if offset >= total and state.get("content_hash"):
        # a finish refused for contention kept all the data: only the commit is left
        return _finish(dbx, delivery, env, b"", state, state["blocks"])
    with document.open(offset) as chunks:
        reader = ChunkReader(chunks, "Dropbox")
        while True:
            size = min(chunk, total - offset)
            data, hashed = _read(reader, size)
            blocks, cursor = (
                state["blocks"] + hashed,
                files.UploadSessionCursor(state["session"], offset),
            )
            if offset + size >= total:
                state = {**state, "content_hash": _content_hash(blocks)}
                env.save_state(delivery.delivery_id, state)
                return _finish(dbx, delivery, env, data, state, blocks)
            _append(dbx, data, cursor, offset, size, _content_hash(hashed))
            offset += size
            del data  # before the next chunk is read: one chunk in memory at a time
            state = {**state, "offset": offset, "blocks": blocks}
            env.save_state(delivery.delivery_id, state)


def _read(reader: ChunkReader, size: int) -> tuple[bytes, list[str]]:
    """The next ``size`` bytes (the SDK takes bytes only), and the SHA-256 of each of their 4 MiB blocks."""
    data = b"".join(reader.take(size))
    view = memoryview(data)  # slices of a view copy nothing
    return data, [hashlib.sha256(view[i : i + BLOCK]).hexdigest() for i in range(0, size, BLOCK)]


def _append(dbx: Any, data: bytes, cursor: Any, offset: int, size: int, chunk_hash: str) -> None:
    try:
        _call(lambda: dbx.files_upload_session_append_v2(data, cursor, content_hash=chunk_hash))
    except exceptions.ApiError as exc:
        tags, value = _tags(exc.error)
        if tags[-1:] == ["incorrect_offset"] and value.correct_offset == offset + size:
            return  # an attempt before this one appended the chunk and died before saving that it had
        if tags[-1:] in (["not_found"], ["incorrect_offset"], ["closed"]):
            raise _SessionGone from None
        raise _refused(exc) from None


def _finish(
    dbx: Any, delivery: Delivery, env: Environment, data: bytes, state: dict, blocks: list[str]
) -> Any:
    """The last chunk (``data``, maybe empty) at the saved offset, and the commit; ``blocks``: the whole
    file's block hashes, saved with the offset once Dropbox holds all the data."""
    offset, end = int(state["offset"]), int(state["offset"]) + len(data)
    policy = delivery.config.get("conflict", "replace")
    mode = files.WriteMode.overwrite if policy == "replace" else files.WriteMode.add
    commit = files.CommitInfo(
        path=state["path"], mode=mode, autorename=policy == "rename", mute=True
    )
    cursor = files.UploadSessionCursor(state["session"], offset)
    chunk_hash = _content_hash(blocks[len(state["blocks"]) :]) if data else None
    try:
        return _call(
            lambda: dbx.files_upload_session_finish(data, cursor, commit, content_hash=chunk_hash)
        )
    except exceptions.ApiError as exc:
        tags, value = _tags(exc.error)
        if tags == ["lookup_failed", "incorrect_offset"] and data and value.correct_offset == end:
            # an earlier finish appended this chunk, then was refused or lost: commit without it
            return _finish(
                dbx, delivery, env, b"", _appended(delivery, env, state, end, blocks), blocks
            )
        if tags[:1] == ["lookup_failed"]:
            raise _SessionGone from None
        if tags == ["path", "too_many_write_operations"]:
            _appended(delivery, env, state, end, blocks)  # "Data has already been appended"
            raise _contended() from None
        if tags == ["too_many_write_operations"]:
            raise _contended() from None
        if tags[:2] == ["path", "conflict"]:
            raise Permanent(
                f"Dropbox: {state['path']} exists and the conflict policy is fail"
            ) from None
        raise _refused(exc) from None


def _appended(
    delivery: Delivery, env: Environment, state: dict, end: int, blocks: list[str]
) -> dict:
    """Dropbox holds the session's data up to ``end``: saved, so a retry sends only what is left."""
    state = {**state, "offset": end, "blocks": blocks}
    env.save_state(delivery.delivery_id, state)
    return state


def _contended() -> Throttled:
    """Dropbox's namespace lock was taken by other writes: the session keeps its data and the commit is
    tried again a little later (spread, so a batch's files do not collide again at once)."""
    return Throttled(
        "Dropbox is busy with other writes to this folder's namespace (too_many_write_operations); "
        "the upload is kept and its commit retried",
        retry_after=1 + random.random(),
    )


def _listing(dbx: Any, folder: str) -> list:
    try:
        page = _call(lambda: dbx.files_list_folder(folder))
    except exceptions.ApiError as exc:
        if "not_found" in _tags(exc.error)[0]:
            return []
        raise _refused(exc) from None
    entries = list(page.entries)
    while page.has_more:
        page = _call(lambda cursor=page.cursor: dbx.files_list_folder_continue(cursor))
        entries += page.entries
    return entries


def _content_hash(blocks: list[str]) -> str:
    """Dropbox's content hash from its blocks' SHA-256 digests (hex); the SDK would work it out again."""
    return hashlib.sha256(b"".join(bytes.fromhex(block) for block in blocks)).hexdigest()


def _outcome(meta: Any) -> Outcome:
    return Outcome(f"dropbox:{meta.path_display}", meta.id)


class _SessionGone(Exception):
    pass


# -- the SDK's errors --------------------------------------------------------------------------------


def _call(request: Any) -> Any:
    """The SDK's answer; its transport, throttling and sign-in errors as the relay's."""
    try:
        return request()
    except exceptions.RateLimitError as exc:
        reason = str(exc.error.reason._tag) if exc.error is not None else "too_many_requests"
        if reason == "too_many_write_operations":
            raise Throttled(
                "Dropbox is busy with other writes to this folder's namespace "
                "(too_many_write_operations)",
                retry_after=exc.backoff,
            ) from None
        raise Throttled(
            f"Dropbox is throttling ({_safe(reason)})", retry_after=exc.backoff
        ) from None
    except exceptions.AuthError as exc:
        raise _signed_out(exc) from None
    except exceptions.PathRootError as exc:
        tags, _ = _tags(exc.error)
        raise Permanent(
            f"Dropbox refused the team space ({_safe('/'.join(tags)) or 'path root'}): the account "
            "cannot write into the namespace root_namespace_id names; set it to the team's root "
            "namespace id (root_info of the account), or leave it empty for the member's own folder"
        ) from None
    except _Forbidden as exc:
        raise Permanent(str(exc)) from None
    except exceptions.BadInputError as exc:
        said = _oauth_error(exc.message)
        raise Permanent(f"Dropbox refused the request: {said}") from None
    except (exceptions.InternalServerError, exceptions.HttpError) as exc:
        raise Retryable(f"Dropbox answered {exc.status_code}") from None
    except requests.RequestException as exc:
        raise Retryable(f"Dropbox could not be reached: {type(exc).__name__}") from None


def _signed_out(exc: exceptions.AuthError) -> Permanent:
    tags, value = _tags(exc.error)
    if tags[:1] == ["missing_scope"]:
        scope = _safe(str(getattr(value, "required_scope", "") or "")) or "a scope"
        return Permanent(
            f"Dropbox: the app's token lacks the scope {scope}; tick it in the app's Permissions tab "
            "(dropbox.com/developers/apps) and connect again for a new refresh token"
        )
    return Permanent(
        f"Dropbox refused the credentials ({_safe(tags[0]) if tags else 'auth'}): check the app key, "
        "secret and refresh token (was the app's access revoked?)"
    )


class _Forbidden(Exception):
    """Dropbox's 403 (AccessError): read here, since the SDK decodes it against each route's own error type
    and keeps only ``other``. Its user_message is Dropbox's words for the user (the data-transport limit)."""

    @classmethod
    def of(cls, response: Any) -> _Forbidden:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        summary = str(body.get("error_summary") or "").rstrip("/.")
        user_message = body.get("user_message") or {}
        said = str(user_message.get("text") or "") if isinstance(user_message, dict) else ""
        said = re.sub(r"[\x00-\x1f\x7f]+", " ", said)[:300]
        text = f"Dropbox refused the request ({_safe(summary) or '403'})"
        if summary.startswith("invalid_account_type/feature"):
            text += (
                ": the team's monthly data transport calls are spent (a Business plan limit); "
                "replay the dead letters after the 1st of the month, or move to a plan without it"
            )
        return cls(f"{text}. Dropbox says: {said}" if said else text)


def _tags(error: Any) -> tuple[list[str], Any]:
    """The chain of a stone union's tags (["lookup_failed", "incorrect_offset"]) and the innermost value."""
    tags, value = [], error
    while isinstance(value, Union):
        tags.append(str(value._tag))
        value = value._value
    return tags, value


def _refused(exc: exceptions.ApiError) -> Permanent:
    tags, _ = _tags(exc.error)
    if "insufficient_space" in tags:
        return Permanent("Dropbox: the account is out of space")
    return Permanent(f"Dropbox refused the upload ({'/'.join(tags)[:200] or 'no error code'})")


def _safe(code: str) -> str:
    """A Dropbox error code or scope as it may be shown; anything else is dropped."""
    return code if re.fullmatch(r"[A-Za-z0-9_.\-/]{1,100}", code) else ""


def _oauth_error(body: str) -> str:
    """Dropbox's error code (``invalid_grant``), never the rest of its answer."""
    try:
        code = json.loads(body).get("error")
    except (ValueError, AttributeError):
        code = None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "no error code"


# -- the client ----------------------------------------------------------------------------------------


class _Dropbox(dropbox.Dropbox):
    """The SDK pointed at the configured hosts: it reads them from DROPBOX_API_HOST at import otherwise,
    once per process, and signs in at the module's own API host whatever the client's map says."""

    def __init__(self, api_host: str, content_host: str, **kwargs):
        super().__init__(**kwargs)
        self._host_map = {
            HOST_API: api_host,
            HOST_CONTENT: content_host,
            HOST_NOTIFY: self._host_map[HOST_NOTIFY],
        }

    def refresh_access_token(self, host=None, scope=None):
        return super().refresh_access_token(host or self._host_map[HOST_API], scope)

    def raise_dropbox_error_for_resp(self, res):
        if res.status_code == 403:
            raise _Forbidden.of(res)
        return super().raise_dropbox_error_for_resp(res)


def _client(delivery: Delivery, env: Environment) -> Any:
    """One client per credentials and process: it keeps its access token (4 hours) and connections."""
    config = delivery.config
    key = hashlib.sha256(
        json.dumps(
            {
                k: config.get(k)
                for k in ("app_key", "app_secret", "refresh_token", "root_namespace_id")
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    with _clients_lock:
        if key not in _clients:
            _clients[key] = new_client(config, env)
        return _clients[key]


def new_client(config: dict, env: Environment) -> Any:
    """A client of its own, that has not signed in yet (a check signs in afresh)."""
    root = config.get("root_namespace_id")
    headers = (
        {"Dropbox-API-Path-Root": json.dumps({".tag": "root", "root": str(root)})} if root else None
    )
    return _Dropbox(
        _host(env.settings["dropbox_api_url"]),
        _host(env.settings["dropbox_content_url"]),
        oauth2_refresh_token=config["refresh_token"],
        app_key=config["app_key"],
        app_secret=config.get("app_secret") or None,
        # the outbound policy's: no redirect, each connection to an address it checked
        session=env.settings["session"](),
        max_retries_on_error=0,
        max_retries_on_rate_limit=0,
        timeout=300,
        headers=headers,
        user_agent="overten-relay/0.1",
    )


def _host(url: str) -> str:
    """host[:port] of an https URL: the SDK builds https://{host}/2/... itself."""
    return str(url).split("://", 1)[-1].rstrip("/")
