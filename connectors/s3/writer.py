"""S3 writes through boto3 (connectors.s3 says what and why)."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from .. import naming
from ..base import Delivery, Document, Environment, Outcome, Permanent
from .check import check
from .client import TAKEN, Seen, call, client_for, look

__all__ = ["check", "deliver", "find_existing"]  # what SdkFileKind calls

MIB = 1024 * 1024
MIN_PART, MAX_PARTS = 5 * MIB, 10_000
META = "relay-delivery-id"


def find_existing(delivery: Delivery, env: Environment) -> Outcome | None:
    key = delivery.state.get("key")
    if not key:
        return None  # no attempt chose a key yet: nothing of ours can be there
    s3 = client_for(delivery, env)
    seen, found = look(s3, delivery.config["bucket"], key)
    if seen is Seen.THERE and found.get("Metadata", {}).get(META) == delivery.delivery_id:
        return _outcome(s3, delivery, key)
    # UNKNOWN: deliver again; the put under the saved key replaces our own object or, for rename and
    # fail, is conditional (If-None-Match), and a refused one is looked at again
    return None


def deliver(delivery: Delivery, document: Document, env: Environment) -> Outcome:
    s3, bucket = client_for(delivery, env), delivery.config["bucket"]
    state = dict(delivery.state)
    if not state.get("key"):
        key, guarded = _key_for(s3, delivery, document)
        state.update(key=key, guarded=guarded)
        env.save_state(delivery.delivery_id, state)
    for _ in range(MAX_RENAMES):
        if _put(s3, delivery, document, env, state):
            return _outcome(s3, delivery, state["key"], document)
        # If-None-Match refused: the key was taken after we looked (or we could not look)
        taken = _taken(s3, delivery, env, state)
        if isinstance(taken, Outcome):
            return taken
        state = taken
    raise Permanent(f"s3://{bucket}/{state['key']}: {MAX_RENAMES} renamed keys were all taken")


def _put(s3: Any, delivery: Delivery, document: Document, env: Environment, state: dict) -> bool:
    """The document under ``state["key"]``; False when a conditional write found the key taken."""
    bucket, key = delivery.config["bucket"], state["key"]
    guard = {"IfNoneMatch": "*"} if state.get("guarded") else {}
    part = max(MIN_PART, int(delivery.config.get("part_mb", 8)) * MIB)
    if document.size is not None and document.size > part * MAX_PARTS:
        raise Permanent(
            f"the document needs more than {MAX_PARTS} parts of {part // MIB} MiB: raise part_mb"
        )
    metadata, answer = {META: delivery.delivery_id}, None
    if document.size is not None and document.size <= part:
        with document.open(0) as chunks:
            for body in _parts(chunks, part):
                answer = call(
                    lambda body=body: s3.put_object(
                        Bucket=bucket,
                        Key=key,
                        Body=body,
                        ContentType=document.content_type,
                        Metadata=metadata,
                        **guard,
                    ),
                    taken=bool(guard),
                    needs="s3:PutObject",
                )
        return answer is not TAKEN
    upload_id = state.get("upload_id")
    done = _parts_held(s3, bucket, key, upload_id) if upload_id else None
    if (
        done is None
    ):  # no upload yet, or S3 forgot it (aborted, expired) or may not list it: start over
        if upload_id:
            _abort(s3, bucket, key, upload_id)  # one it may not list still holds parts
        upload_id = call(
            lambda: s3.create_multipart_upload(
                Bucket=bucket, Key=key, Metadata=metadata, ContentType=document.content_type
            ),
            needs="s3:PutObject",
        )["UploadId"]
        env.save_state(delivery.delivery_id, {**state, "upload_id": upload_id})
        done = []
    try:
        parts = _upload_parts(s3, bucket, key, upload_id, document, part, done)
        answer = call(
            lambda: s3.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **guard,
            ),
            taken=bool(guard),
            needs="s3:PutObject",
        )
    except Permanent:
        _abort(s3, bucket, key, upload_id)
        raise
    if answer is TAKEN:
        _abort(s3, bucket, key, upload_id)  # its parts cannot move to another key
        return False
    return True


# -- the object's key, under the conflict policy ------------------------------------------------------

MAX_RENAMES = 20


def _key_for(s3: Any, delivery: Delivery, document: Document) -> tuple[str, bool]:
    """The key, and whether its put must be conditional (the key's absence could not be seen)."""
    prefix = naming.folder(delivery, document, key="prefix")
    name = naming.file_name(delivery, document)
    key = f"{prefix}/{name}" if prefix else name
    policy, bucket = delivery.config.get("conflict", "replace"), delivery.config["bucket"]
    if policy == "replace":
        return key, False
    seen, _ = look(s3, bucket, key)
    if seen is not Seen.THERE:
        return key, seen is Seen.UNKNOWN
    if policy == "fail":
        raise Permanent(f"s3://{bucket}/{key} exists and the conflict policy is fail")
    return _free(s3, bucket, key)


def _free(s3: Any, bucket: str, key: str, first: int = 2) -> tuple[str, bool]:
    """The first of ``name (first).ext``, ``name (first+1).ext``... not seen there, and whether its absence
    could only be guessed (a 403), so that its put must be conditional."""
    unknown: set[str] = set()

    def taken(candidate: str) -> bool:
        seen, _ = look(s3, bucket, candidate)
        if seen is Seen.UNKNOWN:
            unknown.add(candidate)
        # from _taken (first > 2), the plain name is someone else's already
        return seen is Seen.THERE or (first > 2 and candidate == key)

    free = naming.free_name(key, taken, first=first)
    return free, free in unknown


_NUMBERED = re.compile(r"^(.*) \((\d+)\)(\.[^./]*)?$")


def _taken(s3: Any, delivery: Delivery, env: Environment, state: dict) -> dict | Outcome:
    """A conditional put found ``state["key"]`` taken: by an earlier attempt of ours (its outcome), or by
    someone else's object, which the conflict policy decides about (the next free name, saved)."""
    bucket, key = delivery.config["bucket"], state["key"]
    seen, found = look(s3, bucket, key)
    if seen is Seen.THERE and found.get("Metadata", {}).get(META) == delivery.delivery_id:
        return _outcome(s3, delivery, key)
    if delivery.config.get("conflict", "replace") == "fail":
        raise Permanent(f"s3://{bucket}/{key} exists and the conflict policy is fail")
    numbered = _NUMBERED.match(key)
    base, first = (
        (numbered.group(1) + (numbered.group(3) or ""), int(numbered.group(2)) + 1)
        if numbered
        else (key, 2)
    )
    free, guarded = _free(s3, bucket, base, first)
    state = {"key": free, "guarded": guarded}  # a new key: a new upload
    env.save_state(delivery.delivery_id, state)
    return state


# -- multipart ---------------------------------------------------------------------------------------


def _parts_held(s3: Any, bucket: str, key: str, upload_id: str) -> list[dict] | None:
    """The parts S3 holds, contiguous from part 1 (ETag and size), or None when it no longer knows the upload."""
    listed = call(
        lambda: s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=MAX_PARTS),
        # without s3:ListMultipartUploadParts the parts cannot be listed: the upload starts over
        absent=("NoSuchUpload", "AccessDenied"),
    )
    if listed is None:
        return None
    held = sorted(listed.get("Parts", []), key=lambda p: p["PartNumber"])
    contiguous = [p for n, p in enumerate(held, start=1) if p["PartNumber"] == n]
    return [
        {"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p["Size"]} for p in contiguous
    ]


def _upload_parts(
    s3: Any, bucket: str, key: str, upload_id: str, document: Document, part: int, done: list[dict]
) -> list[dict]:
    parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in done]
    offset = sum(p["Size"] for p in done)
    with document.open(offset) as chunks:
        for number, body in enumerate(_parts(chunks, part), start=len(done) + 1):
            answer = call(
                lambda body=body, number=number: s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                ),
                needs="s3:PutObject",
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    return parts


def _parts(chunks: Iterator[bytes], size: int) -> Iterator[BinaryIO]:
    """The stream as files of ``size`` bytes each (the last one shorter), spooled to disk one at a time:
    botocore reads a part twice (to sign it, then to send it), and from a file it holds none of it."""
    stream = _Stream(chunks)
    while True:
        with tempfile.TemporaryFile() as part:
            written = 0
            while written < size and (piece := stream.read(size - written)):
                part.write(piece)
                written += len(piece)
            if not written:
                return
            part.seek(0)
            yield part
            if written < size:
                return


class _Stream:
    """Reads at most ``count`` bytes at a time from a stream of chunks."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._left = iter(chunks), b""

    def read(self, count: int) -> bytes:
        if not self._left:
            self._left = next(self._chunks, b"")
        piece, self._left = self._left[:count], self._left[count:]
        return piece


def _abort(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    # S3's lifecycle rule for incomplete uploads is the backstop
    with contextlib.suppress(ClientError, BotoCoreError):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def _outcome(s3: Any, delivery: Delivery, key: str, document: Document | None = None) -> Outcome:
    bucket = delivery.config["bucket"]
    if delivery.config.get("session_token"):
        # a link presigned with temporary credentials carries their session token, and dies with the
        # session (1-12 hours) whatever link_seconds says: the relay's own link to the file instead
        link = document.link if document else ""
        return Outcome(f"s3://{bucket}/{key} {link}".strip(), key)
    link = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": key},
        ExpiresIn=int(delivery.config.get("link_seconds", 7 * 86_400)),
    )
    return Outcome(f"s3://{bucket}/{key} {link}", key)
