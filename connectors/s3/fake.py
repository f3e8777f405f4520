"""For the S3 destination's tests: moto's standalone server (a real S3 endpoint on loopback), and a proxy in
front of it that plays what moto does not: throttling answers (429 with Retry-After, as S3-compatible stores
send, refusing calls until it is over; or 503 SlowDown, as S3 does), a request held before it is passed on
(to stop a worker in the middle of a part upload), and two stricter stores:

- ``allow``: an IAM policy that grants only these actions. A request for another action gets 403
  AccessDenied; without ``s3:ListBucket``, a HEAD or GET of a missing key gets 403 instead of 404, as AWS
  answers ("If you don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status code 403",
  HeadObject and GetObject in the S3 API reference). moto's own IAM mode refuses a HEAD even of an object
  the policy lets one read, so the policy is played here.
- ``legacy``: an S3-compatible store that predates botocore 1.36's default checksums: a request with an
  ``x-amz-checksum-*`` or ``x-amz-sdk-checksum-algorithm`` header gets 400 InvalidArgument "Unsupported
  header '...' received for this API call." (Backblaze B2, home-assistant/core#143995), and an aws-chunked
  body (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``) 400 XAmzContentSHA256Mismatch (boto/boto3#4400;
  ovh/public-cloud-roadmap#781 lists both headers as unsupported).

Everything else passes through untouched, signatures included."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import httpx
from werkzeug.wrappers import Request, Response

from ..fake_knobs import Lockout

MOTO_START_SECONDS = 120.0
"""moto_server imports a great deal: on a busy machine it can take long to answer; a hang still ends."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(port: int, authenticated_after: int | None = None) -> subprocess.Popen:
    """moto_server on 127.0.0.1:port; ``authenticated_after``: the number of calls it takes unsigned (to
    create an IAM user and its key) before it checks every request's credentials."""
    binary = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    env = {
        **os.environ,
        **(
            {"INITIAL_NO_AUTH_ACTION_COUNT": str(authenticated_after)}
            if authenticated_after is not None
            else {}
        ),
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if _answers(port, process):
            return process
        process.kill()
        process.wait()
        log.seek(0)
        said = log.read().decode(errors="replace")[-2000:]
    raise RuntimeError(
        f"moto_server did not answer on port {port} within {MOTO_START_SECONDS:g} s "
        f"(exit code {process.returncode}); it said: {said}"
    )


def _answers(port: int, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + MOTO_START_SECONDS
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                client.get(f"http://127.0.0.1:{port}/moto-api/")
                return True
            except httpx.HTTPError:
                time.sleep(0.2)
    return False


@dataclass
class S3Proxy:
    target: str
    parts_received: int = 0
    """UploadPart requests that arrived."""
    parts_forwarded: int = 0
    """UploadPart requests S3 took (a sender killed in the middle of one leaves it unsent)."""
    in_flight: int = 0
    answered: list[tuple[str, int]] = field(default_factory=list)
    """(method and path, status) of every answer, in order."""
    lockout: Lockout = field(default_factory=Lockout)
    """After a 429 with Retry-After, calls are refused until it is over: ``lockout.early`` lists those."""
    held: list[str] = field(default_factory=list)
    """The paths of the requests held (see hold_next)."""
    release: threading.Event = field(default_factory=threading.Event)
    allow: frozenset[str] | None = None
    """The IAM actions the relay's key is granted (``s3:PutObject``...); None: ``s3:*``."""
    legacy: bool = False
    """Refuse botocore's default checksum headers and aws-chunked bodies, as older S3-compatible stores do."""
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(method and path, why) of every request the stricter store refused."""
    _hold: str = ""
    _hold_skip: int = 0
    _faults: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    _throttled_with: tuple[int, dict[str, str], bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def throttle_next(self, count: int, status: int = 429, retry_after: str | None = "1") -> None:
        code = b"SlowDown" if status == 503 else b"TooManyRequests"
        body = (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
            + code
            + b"</Code><Message>Please reduce your request rate.</Message></Error>"
        )
        headers = {
            "Content-Type": "application/xml",
            **({"Retry-After": retry_after} if retry_after else {}),
        }
        with self._lock:
            self._faults += [(status, headers, body)] * count

    def hold_next(self, what: str, skip: int = 0) -> None:
        """The next request of ``what`` (a method, or "part" for an UploadPart) after ``skip`` of them waits,
        its body not passed on and its path in ``held``, until ``release`` is set."""
        self._hold, self._hold_skip = what, skip
        self.release.clear()

    def __call__(self, environ, start_response):
        with self._lock:
            self.in_flight += 1
        try:
            return self._answer(environ, start_response)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, environ, start_response):
        request = Request(environ)
        what = f"{request.method} {request.path}"
        part = request.method == "PUT" and "partNumber" in request.args
        if self._throttled_with and self.lockout.refuses(what):
            return self._fault(environ, start_response, what, self._throttled_with)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault:
            return self._fault(environ, start_response, what, fault)
        if strict := self._strict(request, what):
            self.answered.append((what, strict.status_code))
            return strict(environ, start_response)
        if part:
            self.parts_received += 1
        self._maybe_hold(request, part)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding")
        }
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.full_path.rstrip("?")
        upstream = httpx.request(
            request.method,
            self.target + raw,
            headers=headers,
            content=request.get_data(),
            timeout=120,
        )
        if (
            upstream.status_code == 404
            and self.allow is not None
            and "s3:ListBucket" not in self.allow
            and _action(request) == "s3:GetObject"
        ):
            # AWS does not say a key is missing to a caller who may not list the bucket
            self.refused.append((what, "missing key without s3:ListBucket"))
            return self._denied(environ, start_response, what, request.method == "HEAD")
        self.answered.append((what, upstream.status_code))
        if part and upstream.status_code == 200:
            self.parts_forwarded += 1
        passed = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower()
            not in ("content-length", "transfer-encoding", "content-encoding", "connection")
        }
        return Response(upstream.content, status=upstream.status_code, headers=passed)(
            environ, start_response
        )

    def _strict(self, request: Request, what: str) -> Response | None:
        """The stricter store's refusal of this request, if it refuses it."""
        if self.legacy:
            headers = {k.lower(): v for k, v in request.headers.items()}
            checksum = sorted(
                k
                for k in headers
                if k.startswith("x-amz-checksum-") or k == "x-amz-sdk-checksum-algorithm"
            )
            if headers.get("x-amz-content-sha256", "").startswith("STREAMING-UNSIGNED"):
                self.refused.append((what, "aws-chunked body"))
                return _error(
                    400,
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                )
            if checksum:
                self.refused.append((what, checksum[0]))
                return _error(
                    400,
                    "InvalidArgument",
                    f"Unsupported header '{checksum[0]}' received for this API call.",
                )
        action = _action(request)
        if self.allow is not None and action not in self.allow:
            self.refused.append((what, action))
            return _error(403, "AccessDenied", "Access Denied", head=request.method == "HEAD")
        return None

    def _denied(self, environ, start_response, what: str, head: bool):
        self.answered.append((what, 403))
        return _error(403, "AccessDenied", "Access Denied", head=head)(environ, start_response)

    def _maybe_hold(self, request: Request, part: bool) -> None:
        if not self._hold or self._hold not in (request.method, "part" if part else ""):
            return
        if self._hold_skip:
            self._hold_skip -= 1
            return
        self._hold = ""
        self.held.append(request.path)
        self.release.wait(60)

    def _fault(self, environ, start_response, what: str, fault: tuple[int, dict[str, str], bytes]):
        status, headers, body = fault
        if status == 429 and headers.get("Retry-After"):
            self._throttled_with = fault
            self.lockout.start(float(headers["Retry-After"]))
        self.answered.append((what, status))
        return Response(body, status=status, headers=headers)(environ, start_response)


def _action(request: Request) -> str:
    """The IAM action S3 authorises a request as (the S3 API reference's "Permissions" of each call)."""
    method, args = request.method, request.args
    on_key = "/" in request.path.strip("/")  # path-style: /bucket/key
    if not on_key:
        if method == "GET" and "uploads" in args:
            return "s3:ListBucketMultipartUploads"
        if method in ("GET", "HEAD"):
            return "s3:ListBucket"  # ListObjects(V2) and HeadBucket
        if method == "PUT":
            return "s3:CreateBucket"
        return "s3:DeleteObject" if method == "POST" and "delete" in args else "s3:Unknown"
    if "uploadId" in args:
        return {
            "GET": "s3:ListMultipartUploadParts",
            "DELETE": "s3:AbortMultipartUpload",
        }.get(method, "s3:PutObject")  # UploadPart, CompleteMultipartUpload
    if method in ("GET", "HEAD"):
        return "s3:GetObject"
    if method == "DELETE":
        return "s3:DeleteObject"
    return "s3:PutObject"  # PutObject, CreateMultipartUpload (POST ?uploads)


def _error(status: int, code: str, message: str, head: bool = False) -> Response:
    """S3's XML error; a HEAD's has no body (botocore then reads the status: "403", "Forbidden")."""
    body = (
        b""
        if head
        else (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
            f"{code}</Code><Message>{message}</Message><RequestId>4442587FB7D0A2F9</RequestId>"
            "</Error>"
        ).encode()
    )
    return Response(body, status=status, headers={"Content-Type": "application/xml"})
