"""S3 writes through boto3 (connectors.s3 says what and why)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from .. import naming
from ..base import Delivery, Document, Environment, Outcome, Permanent, Retryable
from ..retry_after import retry_after

MIB = 1024 * 1024
MIN_PART, MAX_PARTS = 5 * MIB, 10_000
META = "relay-delivery-id"
_THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
}
_REFUSED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
}
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def find_existing(delivery: Delivery, env: Environment) -> Outcome | None:
    key = delivery.state.get("key")
    if not key:
        return None  # no attempt chose a key yet: nothing of ours can be there
    s3 = _client(delivery, env)
    found = _head(s3, delivery.config["bucket"], key)
    if found and found.get("Metadata", {}).get(META) == delivery.delivery_id:
        return _outcome(s3, delivery, key)
    return None


def deliver(delivery: Delivery, document: Document, env: Environment) -> Outcome:
    s3, bucket = _client(delivery, env), delivery.config["bucket"]
    state = dict(delivery.state)
    key = state.get("key") or _key_for(s3, delivery, document)
    if state.get("key") != key:
        state["key"] = key
        env.save_state(delivery.delivery_id, state)
    part = max(MIN_PART, int(delivery.config.get("part_mb", 8)) * MIB)
    if document.size is not None and document.size > part * MAX_PARTS:
        raise Permanent(
            f"the document needs more than {MAX_PARTS} parts of {part // MIB} MiB: raise part_mb"
        )
    metadata = {META: delivery.delivery_id}
    if document.size is not None and document.size <= part:
        with document.open(0) as chunks:
            for body in _parts(chunks, part):
                _call(
                    lambda body=body: s3.put_object(
                        Bucket=bucket,
                        Key=key,
                        Body=body,
                        ContentType=document.content_type,
                        Metadata=metadata,
                    )
                )
        return _outcome(s3, delivery, key)
    upload_id = state.get("upload_id")
    done = _parts_held(s3, bucket, key, upload_id) if upload_id else None
    if done is None:  # no upload yet, or S3 forgot it (aborted, expired): start over
        upload_id = _call(
            lambda: s3.create_multipart_upload(
                Bucket=bucket, Key=key, Metadata=metadata, ContentType=document.content_type
            )
        )["UploadId"]
        env.save_state(delivery.delivery_id, {**state, "upload_id": upload_id})
        done = []
    try:
        parts = _upload_parts(s3, bucket, key, upload_id, document, part, done)
        _call(
            lambda: s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        )
    except Permanent:
        _abort(s3, bucket, key, upload_id)
        raise
    return _outcome(s3, delivery, key)


# -- the object's key, under the conflict policy ------------------------------------------------------


def _key_for(s3: Any, delivery: Delivery, document: Document) -> str:
    prefix = naming.folder(delivery, document, key="prefix")
    name = naming.file_name(delivery, document)
    key = f"{prefix}/{name}" if prefix else name
    policy, bucket = delivery.config.get("conflict", "replace"), delivery.config["bucket"]
    if policy == "replace" or not _head(s3, bucket, key):
        return key
    if policy == "fail":
        raise Permanent(f"s3://{bucket}/{key} exists and the conflict policy is fail")
    return naming.free_name(key, lambda candidate: _head(s3, bucket, candidate) is not None)


# -- multipart ---------------------------------------------------------------------------------------


def _parts_held(s3: Any, bucket: str, key: str, upload_id: str) -> list[dict] | None:
    """The parts S3 holds, contiguous from part 1 (ETag and size), or None when it no longer knows the upload."""
    listed = _call(
        lambda: s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=MAX_PARTS),
        absent=("NoSuchUpload",),
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
            answer = _call(
                lambda body=body, number=number: s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
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


# -- the client, answers and errors --------------------------------------------------------------------


def _client(delivery: Delivery, env: Environment) -> Any:
    """One client per configuration and process (boto3's clients are thread-safe; making one costs ~14 MiB
    and tens of ms)."""
    config = delivery.config
    endpoint = config.get("endpoint_url") or None
    if endpoint:
        env.settings["check_url"](endpoint)  # a user-supplied URL like any other
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    with _clients_lock:
        if key not in _clients:
            client = _new_client(config, endpoint, env.settings.get("ca_bundle"))
            # botocore's URLLib3Session takes no connection classes: its pools are pinned in place, so each
            # connection (to a tenant's endpoint, or a redirect's) goes to an address the policy checked
            http = client._endpoint.http_session
            env.settings["pin_pools"](http._manager)
            http._pool_classes_by_scheme = http._manager.pool_classes_by_scheme
            _clients[key] = client
        return _clients[key]


def _new_client(config: dict, endpoint: str | None, ca_bundle: str | None) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=config.get("region") or "us-east-1",
        verify=ca_bundle or None,
        aws_access_key_id=config["access_key_id"],
        aws_secret_access_key=config["secret_access_key"],
        aws_session_token=config.get("session_token") or None,
        config=Config(
            signature_version="s3v4",
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": config.get("addressing_style", "auto")},
            connect_timeout=10,
            read_timeout=120,
        ),
    )


def _head(s3: Any, bucket: str, key: str) -> dict | None:
    return _call(
        lambda: s3.head_object(Bucket=bucket, Key=key), absent=("404", "NoSuchKey", "NotFound")
    )


def _outcome(s3: Any, delivery: Delivery, key: str) -> Outcome:
    bucket = delivery.config["bucket"]
    if delivery.config.get("session_token"):
        # a link presigned with temporary credentials carries their session token: kept out of the
        # delivery's record (read by the tenant, stored for the retention period)
        return Outcome(f"s3://{bucket}/{key}", key)
    link = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": key},
        ExpiresIn=int(delivery.config.get("link_seconds", 7 * 86_400)),
    )
    return Outcome(f"s3://{bucket}/{key} {link}", key)


def _call(request: Any, absent: tuple[str, ...] = ()) -> Any:
    """The answer; None when S3's error code says what was asked for is not there (``absent``)."""
    try:
        return request()
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code") or "") in absent:
            return None
        raise _classify(exc) from None
    except EndpointConnectionError:
        raise Retryable("S3 could not be reached") from None
    except BotoCoreError as exc:
        raise Retryable(f"S3 could not be used ({type(exc).__name__})") from None


def _classify(exc: ClientError) -> Exception:
    """Status and S3's error code; never the rest of the answer (the endpoint is the tenant's to choose)."""
    error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
    code, status = str(error.get("Code") or ""), int(meta.get("HTTPStatusCode") or 0)
    code = code if _CODE.fullmatch(code) else ""
    message = f"S3 answered {status} {code}".strip()
    wait = retry_after((meta.get("HTTPHeaders") or {}).get("retry-after"))
    if code in _THROTTLED or status in (429, 503):
        return Retryable(message, retry_after=wait)
    if code in _REFUSED or status == 403:
        return Permanent(f"S3 refused the credentials or their permissions ({code or status})")
    if code == "NoSuchBucket":
        return Permanent("S3: the bucket does not exist")
    if status >= 500 or status in (408, 409):
        return Retryable(message)
    return Permanent(message)
