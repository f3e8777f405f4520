"""Dropbox writes through the official SDK (connectors.dropbox says what and why)."""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from .. import naming
from ..base import (
    ChunkReader,
    Delivery,
    Document,
    Environment,
    Outcome,
    Permanent,
    Retryable,
    Throttled,
)
from .check import check
from .client import call, client_for, refused, tags_of
from .sdk import exceptions, files

__all__ = ["check", "deliver", "find_existing"]  # what SdkFileKind calls

MIB = 1024 * 1024
# Dropbox's content hash works in 4 MiB blocks; every chunk but the last is a multiple of it
BLOCK = 4 * MIB


def find_existing(delivery: Delivery, env: Environment) -> Outcome | None:
    state = delivery.state
    if not state.get("content_hash"):
        return None  # no attempt reached its last chunk: no file of ours can be there
    folder, name = state["path"].rpartition("/")[::2]
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    named = re.compile(rf"{re.escape(stem)}( \(\d+\))?{re.escape(dot + ext)}", re.IGNORECASE)
    for entry in _listing(client_for(delivery, env), folder):
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
    dbx, state = client_for(delivery, env), dict(delivery.state)
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
    session = call(lambda: dbx.files_upload_session_start(b"")).session_id
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
        call(lambda: dbx.files_upload_session_append_v2(data, cursor, content_hash=chunk_hash))
    except exceptions.ApiError as exc:
        tags, value = tags_of(exc.error)
        if tags[-1:] == ["incorrect_offset"] and value.correct_offset == offset + size:
            return  # an attempt before this one appended the chunk and died before saving that it had
        if tags[-1:] in (["not_found"], ["incorrect_offset"], ["closed"]):
            raise _SessionGone from None
        raise refused(exc) from None


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
        return call(
            lambda: dbx.files_upload_session_finish(data, cursor, commit, content_hash=chunk_hash)
        )
    except exceptions.ApiError as exc:
        tags, value = tags_of(exc.error)
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
        raise refused(exc) from None


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
        page = call(lambda: dbx.files_list_folder(folder))
    except exceptions.ApiError as exc:
        if "not_found" in tags_of(exc.error)[0]:
            return []
        raise refused(exc) from None
    entries = list(page.entries)
    while page.has_more:
        page = call(lambda cursor=page.cursor: dbx.files_list_folder_continue(cursor))
        entries += page.entries
    return entries


def _content_hash(blocks: list[str]) -> str:
    """Dropbox's content hash from its blocks' SHA-256 digests (hex); the SDK would work it out again."""
    return hashlib.sha256(b"".join(bytes.fromhex(block) for block in blocks)).hexdigest()


def _outcome(meta: Any) -> Outcome:
    return Outcome(f"dropbox:{meta.path_display}", meta.id)


class _SessionGone(Exception):
    pass
