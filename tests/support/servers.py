"""Real HTTP servers on loopback for tests: any WSGI app in a thread, and a webhook receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class ServedApp:
    """Serves a WSGI app on 127.0.0.1 (or another loopback ``host``) in a background thread; can be stopped and
    started again on the same port (to simulate an outage)."""

    def __init__(self, app, port: int = 0, tls=None, host: str = "127.0.0.1"):
        """``tls``: an ssl.SSLContext to serve HTTPS with (tests.support.tls), for clients that speak nothing else;
        ``host``: e.g. 127.0.0.2, an internal address the relay's allow-list leaves out."""
        self.app = app
        self.port = port
        self.tls = tls
        self.host = host
        self.answers: list[tuple[str, str, int]] = []
        """(method, path, status) of every answer, for tests that check what callers were told."""
        self.in_flight = 0
        """Requests that came in and are not answered yet."""
        self._lock = threading.Lock()
        self._server = None
        self._thread: threading.Thread | None = None

    def _recording(self, environ, start_response):
        # before a dispatcher shifts it
        method, path = (
            environ["REQUEST_METHOD"],
            environ.get("PATH_INFO", ""),
        )

        def record(status: str, headers, *args):
            self.answers.append((method, path, int(status[:3])))
            return start_response(status, headers, *args)

        with self._lock:
            self.in_flight += 1
        try:
            yield from self.app(environ, record)
        finally:
            with self._lock:
                self.in_flight -= 1

    def start(self) -> ServedApp:
        self._server = make_server(
            self.host, self.port, self._recording, threaded=True, ssl_context=self.tls
        )
        self.port = self._server.server_port
        # a short poll: stop() waits for serve_forever to see the request, up to one poll (0.5 s by default)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

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
    seq: int
    """Its place in the order the requests arrived in (0 first)."""
    at: float = field(default_factory=time.monotonic)
    """When it was answered (time.monotonic()): for a report's figures only, never for an assertion."""


@dataclass
class WebhookReceiver:
    """Records every request; answers with the next scripted status (then ``default_status``). ``hold()``
    keeps each request that arrives waiting, before it is answered, until ``release()``: a sender is caught in
    the middle of a request for as long as a test needs."""

    script: list[int] = field(default_factory=list)
    default_status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every answer (a Retry-After, say)."""
    requests: list[Received] = field(default_factory=list)
    """The requests answered (or being answered), in the order they arrived."""
    arrived: int = 0
    """Requests that came in, answered or not (``arrived > len(requests)``: one is held or being answered)."""
    _open: threading.Event = field(default_factory=lambda: _set(threading.Event()))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            seq, self.arrived = self.arrived, self.arrived + 1
        self._open.wait()
        with self._lock:
            self.requests.append(
                Received(
                    request.method, request.path, dict(request.headers), request.get_data(), seq
                )
            )
            status = self.script.pop(0) if self.script else self.default_status
        return Response(status=status, headers=self.headers)(environ, start_response)

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    @property
    def in_flight(self) -> int:
        """Requests that arrived and are not answered yet (held, or on their way out)."""
        with self._lock:
            return self.arrived - len(self.requests)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        eventually(
            lambda: len(self.requests) >= count,
            timeout,
            f"{count} webhook request(s)",
            show=lambda: f"{len(self.requests)} answered, {self.in_flight} in flight",
        )
        return list(self.requests)


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


def eventually(
    check: Callable[[], object],
    timeout: float = 60.0,
    what: str = "condition",
    every: float = 0.02,
    show: Callable[[], object] | None = None,
):
    """Poll ``check`` every ``every`` seconds until it returns something truthy, and return that. The deadline
    is there to end a test that hangs, not to measure speed: a wait on a busy machine may take many times
    what it takes on an idle one, so ``timeout`` is generous. On failure the message says what was waited for
    (``what``: "every delivery to land") and what ``show()`` says of the state then. A costly check (hundreds
    of requests) polls less often: on 2 cores its load slows what it waits for."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            state = f"; {show()}" if show is not None else ""
            raise AssertionError(f"waited {timeout:g} s for {what}: it never happened{state}")
        time.sleep(every)
