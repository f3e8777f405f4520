"""boto3's S3 client through the outbound policy, a key looked at (there, absent, or unknown to a caller
without s3:ListBucket), and S3's errors as the relay's: shared by deliveries and checks."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from ..base import Delivery, Environment, Permanent, Retryable
from ..retry_after import retry_after

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


class Seen(Enum):
    """What a HEAD of a key tells."""

    THERE = "there"
    ABSENT = "absent"
    UNKNOWN = "unknown"
    """403: without s3:ListBucket, S3 answers a missing key with 403, so absent and forbidden look alike."""


# -- the client, answers and errors --------------------------------------------------------------------


def client_for(delivery: Delivery, env: Environment) -> Any:
    """One client per configuration and process (boto3's clients are thread-safe; making one costs ~14 MiB
    and tens of ms)."""
    config = delivery.config
    endpoint = config.get("endpoint_url") or None
    if endpoint:
        env.settings["check_url"](endpoint)  # a user-supplied URL like any other
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    with _clients_lock:
        if key not in _clients:
            client = _newclient_for(config, endpoint, env.settings.get("ca_bundle"))
            # botocore's URLLib3Session takes no connection classes: its pools are pinned in place, so each
            # connection (to a tenant's endpoint, or a redirect's) goes to an address the policy checked
            http = client._endpoint.http_session
            env.settings["pin_pools"](http._manager)
            http._pool_classes_by_scheme = http._manager.pool_classes_by_scheme
            _clients[key] = client
        return _clients[key]


def _newclient_for(config: dict, endpoint: str | None, ca_bundle: str | None) -> Any:
    # botocore >= 1.36 sends CRC checksums (x-amz-checksum-*, aws-chunked bodies) by default, which many
    # S3-compatible stores refuse; to them, only when an operation requires one
    checksums = (
        {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
        if endpoint
        else {}
    )
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
            **checksums,
        ),
    )


def look(s3: Any, bucket: str, key: str) -> tuple[Seen, dict]:
    """Whether ``key`` is there (and its HEAD), absent, or unknown: a 403, which is S3's answer for a
    missing key to a caller without s3:ListBucket (and for any key without s3:GetObject)."""
    try:
        return Seen.THERE, s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in ("404", "NoSuchKey", "NotFound"):
            return Seen.ABSENT, {}
        if status == 403 and code in ("403", "AccessDenied", "Forbidden"):
            return Seen.UNKNOWN, {}
        raise classify(exc) from None
    except EndpointConnectionError:
        raise Retryable("S3 could not be reached") from None
    except BotoCoreError as exc:
        raise Retryable(f"S3 could not be used ({type(exc).__name__})") from None


TAKEN = object()
"""A conditional write's answer when the key was taken (412 PreconditionFailed)."""


def call(
    request: Callable[[], Any], absent: tuple[str, ...] = (), taken: bool = False, needs: str = ""
) -> Any:
    """The answer; None when S3's error code says what was asked for is not there (``absent``); TAKEN when
    a conditional write (``taken``) found the key there. ``needs``: the IAM action the call needs, named
    when S3 refuses it."""
    try:
        return request()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code") or "")
        if code in absent:
            return None
        if taken and code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return TAKEN
        if taken and code == "NotImplemented":
            raise Permanent(
                "the store cannot write only if a key is absent (If-None-Match), and without "
                "s3:ListBucket it does not say whether a key exists: grant s3:ListBucket on the bucket, "
                "or use the conflict policy replace"
            ) from None
        raise classify(exc, needs) from None
    except EndpointConnectionError:
        raise Retryable("S3 could not be reached") from None
    except BotoCoreError as exc:
        raise Retryable(f"S3 could not be used ({type(exc).__name__})") from None


def classify(exc: ClientError, needs: str = "") -> Exception:
    """Status and S3's error code; never the rest of the answer (the endpoint is the tenant's to choose)."""
    error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
    code, status = str(error.get("Code") or ""), int(meta.get("HTTPStatusCode") or 0)
    code = code if _CODE.fullmatch(code) else ""
    message = f"S3 answered {status} {code}".strip()
    wait = retry_after((meta.get("HTTPHeaders") or {}).get("retry-after"))
    if code in _THROTTLED or status in (429, 503):
        return Retryable(message, retry_after=wait)
    if code == "AccessDenied" and needs:
        return Permanent(
            f"S3 refused the credentials' permissions (AccessDenied): grant {needs} on the bucket"
        )
    if code in _REFUSED or status == 403:
        return Permanent(f"S3 refused the credentials or their permissions ({code or status})")
    if code == "NoSuchBucket":
        return Permanent("S3: the bucket does not exist")
    if status >= 500 or status in (408, 409):
        return Retryable(message)
    return Permanent(message)
