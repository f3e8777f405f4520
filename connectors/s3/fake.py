"""For the S3 destination's tests: moto's standalone server (a real S3 endpoint on loopback), and a proxy in
front of it that plays S3's bad days, which moto does not: throttling answers (429 with Retry-After, as
S3-compatible stores send, refusing calls until it is over; or 503 SlowDown, as S3 does) and a request held
before it is passed on (to stop a worker in the middle of a part upload). Everything else passes through
untouched, signatures included."""

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
