"""For the S3 destination's tests: moto's standalone server (a real S3 endpoint on loopback), and a proxy in
front of it that plays S3's bad days, which moto does not: throttling answers (429 with Retry-After, as
S3-compatible stores send, or 503 SlowDown, as S3 does) and slow part uploads (to stop a worker in the middle
of one). Everything else passes through untouched, signatures included."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
from werkzeug.wrappers import Request, Response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(port: int, authenticated_after: int | None = None) -> subprocess.Popen:
    """moto_server on 127.0.0.1:port; ``authenticated_after``: the number of calls it takes unsigned (to
    create an IAM user and its key) before it checks every request's credentials."""
    binary = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    env = {**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": str(authenticated_after)}
                            if authenticated_after is not None else {})}
    process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto_server did not come up")


@dataclass
class S3Proxy:
    target: str
    part_delay: float = 0.0
    """Seconds each UploadPart waits before it is passed on."""
    parts_received: int = 0
    """UploadPart requests that arrived."""
    parts_forwarded: int = 0
    """UploadPart requests S3 took (a sender killed in the middle of one leaves it unsent)."""
    in_flight: int = 0
    answered: list[tuple[float, str, int]] = field(default_factory=list)
    """(time.time(), method and path, status) of every answer."""
    held: list[str] = field(default_factory=list)
    """The paths of the requests held (see hold_next)."""
    release: threading.Event = field(default_factory=threading.Event)
    _hold: str = ""
    _faults: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def throttle_next(self, count: int, status: int = 429, retry_after: str | None = "1") -> None:
        code = b"SlowDown" if status == 503 else b"TooManyRequests"
        body = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>" + code + \
            b"</Code><Message>Please reduce your request rate.</Message></Error>"
        headers = {"Content-Type": "application/xml", **({"Retry-After": retry_after} if retry_after else {})}
        with self._lock:
            self._faults += [(status, headers, body)] * count

    def hold_next(self, method: str) -> None:
        """The next request of ``method`` waits, its path in ``held``, until ``release`` is set."""
        self._hold = method
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
        if self._hold and request.method == self._hold:
            self._hold = ""
            self.held.append(request.path)
            self.release.wait(60)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault:
            status, headers, body = fault
            self.answered.append((time.time(), what, status))
            return Response(body, status=status, headers=headers)(environ, start_response)
        if request.method == "PUT" and "partNumber" in request.args:
            time.sleep(self.part_delay)
            self.parts_received += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.full_path.rstrip("?")
        upstream = httpx.request(request.method, self.target + raw,
                                 headers=headers, content=request.get_data(), timeout=120)
        self.answered.append((time.time(), what, upstream.status_code))
        if request.method == "PUT" and "partNumber" in request.args and upstream.status_code == 200:
            self.parts_forwarded += 1
        passed = {k: v for k, v in upstream.headers.items()
                  if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")}
        return Response(upstream.content, status=upstream.status_code, headers=passed)(environ, start_response)
