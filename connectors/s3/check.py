"""An S3 destination checked when it is saved, without delivering a document: a small test object is put
under the prefix's fixed part (the bucket exists, the key signs in, s3:PutObject), read back (s3:GetObject,
which the presigned links need), a key that is not there is looked for (s3:ListBucket: without it S3 answers
403, not 404), a multipart upload is started, listed and aborted (s3:ListMultipartUploadParts,
s3:AbortMultipartUpload), and the test object is deleted (s3:DeleteObject, needed only for that)."""

from __future__ import annotations

import secrets
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..base import Check, Delivery, DeliveryError, Environment, Verdict
from .client import Seen, call, client_for, look

PUT = "the bucket takes a put (s3:PutObject)"
GET = "reads its objects back (s3:GetObject)"
LIST = "tells a missing key (s3:ListBucket)"
MULTIPART = (
    "large uploads resume and clean up (s3:ListMultipartUploadParts, s3:AbortMultipartUpload)"
)
DELETE = "removes its test object (s3:DeleteObject)"
SESSION = "the credentials last"


def check(target: Delivery, env: Environment) -> list[Check]:
    config = target.config
    bucket = config["bucket"]
    marker = _under(_fixed_prefix(str(config.get("prefix") or "")), secrets.token_hex(4))
    try:
        s3 = client_for(target, env)
        call(lambda: s3.put_object(Bucket=bucket, Key=marker, Body=b""), needs="s3:PutObject")
    except DeliveryError as exc:
        return [Check(PUT, Verdict.FAILURE, exc.message, _fix(exc.message))]
    checks = [Check(PUT, Verdict.PASS, f"A test object was put at s3://{bucket}/{marker}.")]
    checks.append(_get(s3, bucket, marker))
    checks.append(_list(s3, bucket, marker))
    checks.append(_multipart(s3, bucket, marker))
    checks.append(_delete(s3, bucket, marker))
    if config.get("session_token"):
        checks.append(
            Check(
                SESSION,
                Verdict.WARNING,
                "A session token means temporary credentials: they end with their session (1 to 12 "
                "hours), then every delivery fails with ExpiredToken.",
                "Use an IAM user's access key (no session token) with the permissions above.",
            )
        )
    return checks


def _get(s3: Any, bucket: str, marker: str) -> Check:
    seen, _ = look(s3, bucket, marker)
    if seen is Seen.THERE:
        return Check(GET, Verdict.PASS, "The test object can be read.")
    return Check(
        GET,
        Verdict.WARNING,
        "The test object cannot be read: the presigned link of each delivery will not open, and a retry "
        "cannot find the object an earlier attempt wrote, so it writes it again.",
        f"Grant s3:GetObject on arn:aws:s3:::{bucket}/*.",
    )


def _list(s3: Any, bucket: str, marker: str) -> Check:
    seen, _ = look(s3, bucket, f"{marker}-absent")
    if seen is Seen.ABSENT:
        return Check(LIST, Verdict.PASS, "A missing key is answered 404.")
    return Check(
        LIST,
        Verdict.WARNING,
        "A missing key is answered 403, so the relay cannot see whether a name is free: with the "
        "conflict policies rename and fail it writes only-if-absent (If-None-Match; AWS, R2 and "
        "recent MinIO honour it, a store that does not makes those deliveries fail), and a retry "
        "cannot tell its own missing object from a forbidden one.",
        f"Grant s3:ListBucket on arn:aws:s3:::{bucket} (the bucket itself, not its objects).",
    )


def _multipart(s3: Any, bucket: str, marker: str) -> Check:
    lost = []
    try:
        upload = s3.create_multipart_upload(Bucket=bucket, Key=f"{marker}-multipart")["UploadId"]
    except (ClientError, BotoCoreError):
        return Check(
            MULTIPART,
            Verdict.WARNING,
            "A multipart upload could not be started: files larger than part_mb will fail.",
            "Grant s3:PutObject on the bucket's objects; check the store supports multipart uploads.",
        )
    try:
        s3.list_parts(Bucket=bucket, Key=f"{marker}-multipart", UploadId=upload)
    except (ClientError, BotoCoreError):
        lost.append(("s3:ListMultipartUploadParts", "a large upload cut short starts over"))
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=f"{marker}-multipart", UploadId=upload)
    except (ClientError, BotoCoreError):
        lost.append(
            (
                "s3:AbortMultipartUpload",
                "the parts of a failed large upload stay (and are billed) until a lifecycle rule "
                "removes them; this check's own empty upload is one of them",
            )
        )
    if not lost:
        return Check(MULTIPART, Verdict.PASS, "A multipart upload was started, listed and aborted.")
    return Check(
        MULTIPART,
        Verdict.WARNING,
        "Without " + "; without ".join(f"{action}, {what}" for action, what in lost) + ".",
        "Grant " + " and ".join(action for action, _ in lost) + f" on arn:aws:s3:::{bucket}/*.",
    )


def _delete(s3: Any, bucket: str, marker: str) -> Check:
    try:
        s3.delete_object(Bucket=bucket, Key=marker)
    except (ClientError, BotoCoreError):
        return Check(
            DELETE,
            Verdict.WARNING,
            f"The test object s3://{bucket}/{marker} (0 bytes) stays in the bucket.",
            "Delete it by hand; deliveries do not need s3:DeleteObject.",
        )
    return Check(DELETE, Verdict.PASS, "The test object was deleted.")


def _fix(message: str) -> str:
    if "does not exist" in message:
        return "Create the bucket, or correct its name and region."
    if "grant " in message:
        said = message.rpartition(": ")[2]
        return said[:1].upper() + said[1:] + "."
    if "credentials" in message:
        return "Check the access key id and secret (and the session token, if any)."
    return "Check the endpoint URL and that the store is reachable from the relay."


def _fixed_prefix(template: str) -> str:
    """The part of a prefix template before its first field, whole levels only."""
    fixed = template.split("{", 1)[0]
    if "{" in template:
        fixed = fixed.rpartition("/")[0]
    return "/".join(part for part in fixed.split("/") if part)


def _under(prefix: str, name: str) -> str:
    return f"{prefix}/.relay-check-{name}" if prefix else f".relay-check-{name}"
