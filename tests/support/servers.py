"""Real HTTP servers on loopback for tests: any WSGI app in a thread, and a webhook receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class ServedApp:
    """Serves a WSGI app on 127.0.0.1 in a background thread; can be stopped and started again on the
    same port (to simulate an outage)."""

    def __init__(self, app, port: int = 0, tls=None):
        """``tls``: an ssl.SSLContext to serve HTTPS with (tests.support.tls), for clients that speak nothing else."""
        self.app = app
        self.port = port
        self.tls = tls
        self.answers: list[tuple[str, str, int]] = []
        """(method, path, status) of every answer, for tests that check what callers were told."""
        self._server = None
        self._thread: threading.Thread | None = None

    def _recording(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")  # before a dispatcher shifts it

        def record(status: str, headers, *args):
            self.answers.append((method, path, int(status[:3])))
            return start_response(status, headers, *args)

        return self.app(environ, record)

    def start(self) -> ServedApp:
        self._server = make_server("127.0.0.1", self.port, self._recording, threaded=True, ssl_context=self.tls)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class WebhookReceiver:
    """Records every request; answers with the next scripted status (then ``default_status``)."""

    script: list[int] = field(default_factory=list)
    default_status: int = 204
    delay: float = 0.0
    """Seconds to wait before answering (to catch a sender in the middle of a request)."""
    requests: list[Received] = field(default_factory=list)
    arrived: int = 0
    """Requests that came in, answered or not (``arrived > len(requests)``: one is being answered)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            self.arrived += 1
        time.sleep(self.delay)
        with self._lock:
            self.requests.append(Received(request.method, request.path, dict(request.headers), request.get_data()))
            status = self.script.pop(0) if self.script else self.default_status
        return Response(status=status)(environ, start_response)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        eventually(lambda: len(self.requests) >= count, timeout, f"{count} webhook request(s)")
        return list(self.requests)


def eventually(check: Callable[[], object], timeout: float = 10.0, what: str = "condition", every: float = 0.02):
    """Poll ``check`` every ``every`` seconds until it returns something truthy; fail the test after ``timeout``
    seconds. A costly check (hundreds of requests) polls less often: on 2 cores its load slows what it waits for."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
