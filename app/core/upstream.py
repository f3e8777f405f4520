"""The one client for the Overten generation API contract (../shared/upstream-api), over httpx.

Retries connection errors, 429 (honouring Retry-After) and 5xx with exponential backoff and jitter;
never other 4xx. Each outcome has its own exception. Downloads stream; nothing holds a whole file.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import certifi
import httpx

from app.core import metrics
from app.core.states import TASK_ENDED
from connectors.retry_after import retry_after

FORMAT_ENDPOINTS = {
    "excel": "/excel/generate",
    "word": "/word/generate",
    "slides": "/slides/generate",
    "slides_outline": "/slides/outline",
    "text_summary": "/text/summary",
    "text_email": "/text/email",
    "text_memo": "/text/memo",
    "text_rewrite": "/text/rewrite",
    "text_bullets": "/text/bullets",
}
CHUNK = 256 * 1024
TLS = ssl.create_default_context(cafile=certifi.where())
"""One TLS context for every client of the process: httpx builds a new one per client otherwise, loading the
CA bundle each time (~20 ms of CPU, most of what a submit cost the web process in bench/retention)."""


# -- outcomes --------------------------------------------------------------------------------------


class UpstreamError(Exception):
    """Base of every failure the API reports; carries its status, code and message."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str = "",
        field: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message, self.status, self.code, self.field, self.retry_after = (
            message,
            status,
            code,
            field,
            retry_after,
        )


class UpstreamUnavailable(UpstreamError):
    """Unreachable, 5xx or rate-limited even after retries: worth trying again later."""


class UpstreamAuthError(UpstreamError):
    """401/403: the tenant's API key is wrong or revoked."""


class UpstreamRejected(UpstreamError):
    """400/422: the API refused the request; ``message`` and ``field`` say why."""


class UpstreamNotFound(UpstreamError):
    pass


class UpstreamConflict(UpstreamError):
    pass


class RunExpired(UpstreamError):
    """410 on resume: the run is past retention. Start a fresh run."""


class PollTimeout(UpstreamError):
    pass


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    """The answer to a generate call: 202 (accepted or promoted) or 200 (finished, sync mode)."""

    run_id: str
    task_id: str
    status: str
    message: str | None = None
    download_url: str | None = None
    edit_url: str | None = None
    summary: str | None = None
    credits_used: int | None = None
    duration_ms: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in TASK_ENDED


@dataclass(frozen=True)
class Task:
    task_id: str
    run_id: str
    status: str
    progress: int
    phase: str | None = None
    turn_index: int | None = None
    result: dict | None = None
    error: dict | None = None
    credits_used: int | None = None
    duration_ms: int | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in TASK_ENDED

    @classmethod
    def from_json(cls, body: dict) -> Task:
        return cls(
            task_id=body["task_id"],
            run_id=body.get("run_id", ""),
            status=body["status"],
            progress=int(body.get("progress") or 0),
            phase=body.get("phase"),
            turn_index=body.get("turn_index"),
            result=body.get("result"),
            error=body.get("error"),
            credits_used=body.get("credits_used"),
            duration_ms=body.get("duration_ms"),
            raw=body,
        )


@dataclass(frozen=True)
class RunsPage:
    items: list[dict]
    next_cursor: str | None


@dataclass(frozen=True)
class Export:
    format: str
    download_url: str
    expires_at: str | None


# -- policies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4
    base_seconds: float = 0.5
    cap_seconds: float = 10.0
    max_retry_after_seconds: float = 60.0
    """A Retry-After longer than this is not waited out in-line: the call fails as unavailable."""

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = min(self.cap_seconds, self.base_seconds * 2**attempt) * random.uniform(0.5, 1.0)
        return max(backoff, retry_after or 0.0)


@dataclass(frozen=True)
class PollPolicy:
    """The contract's strategy: first wait 2-5 s, growing, at most 10 s apart, give up after 30 min."""

    first_seconds: float = 3.0
    step_seconds: float = 0.5
    cap_seconds: float = 10.0
    give_up_seconds: float = 1800.0

    def delay(self, attempt: int) -> float:
        return min(self.first_seconds + attempt * self.step_seconds, self.cap_seconds)


class _HasUpstream(Protocol):
    upstream_url: str
    upstream_key: str


class UpstreamClients:
    """Makes a tenant's API clients with the configured timeout and retries."""

    def __init__(self, timeout: float = 30.0, retry: RetryPolicy | None = None):
        self._timeout, self._retry = timeout, retry or RetryPolicy()

    def __call__(self, tenant: _HasUpstream) -> UpstreamClient:
        return UpstreamClient(
            tenant.upstream_url, tenant.upstream_key, timeout=self._timeout, retry=self._retry
        )

    def once(self, tenant: _HasUpstream, timeout: float = 5.0) -> UpstreamClient:
        """A client that tries once, briefly: for reads on a person's request path."""
        return UpstreamClient(
            tenant.upstream_url, tenant.upstream_key, timeout=timeout, retry=RetryPolicy(retries=0)
        )


# -- the client ------------------------------------------------------------------------------------


class UpstreamClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ):
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            verify=TLS,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "overten-relay/0.1"},
        )
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self.throttled = 0
        """How many of this client's calls the API answered 429, retried ones included (a batch's feed slows
        down on them even when a retry got through)."""

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UpstreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # generation

    def generate(
        self,
        fmt: str,
        prompt: str,
        *,
        run_id: str | None = None,
        async_: bool = True,
        webhook_url: str | None = None,
    ) -> Submitted:
        body: dict[str, Any] = {"prompt": prompt, "async": async_}
        if run_id:
            body["run_id"] = run_id
        if webhook_url:
            body["webhook_url"] = webhook_url
        # A POST that reached the server may have started a job: retry only what surely did not.
        data = self._call("POST", FORMAT_ENDPOINTS[fmt], json=body, safe_to_resend=False)
        known = {k: data.get(k) for k in Submitted.__dataclass_fields__}
        return Submitted(**known)

    # tasks

    def get_task(self, task_id: str) -> Task:
        return Task.from_json(self._call("GET", f"/tasks/{task_id}"))

    def cancel_task(self, task_id: str) -> Task:
        return Task.from_json(self._call("POST", f"/tasks/{task_id}/cancel"))

    def poll(
        self,
        task_id: str,
        policy: PollPolicy | None = None,
        on_update: Callable[[Task], None] | None = None,
    ) -> Task:
        """Poll until the task ends, following the contract's backoff."""
        policy = policy or PollPolicy()
        deadline = time.monotonic() + policy.give_up_seconds
        attempt = 0
        while True:
            task = self.get_task(task_id)
            if on_update:
                on_update(task)
            if task.finished:
                return task
            if time.monotonic() >= deadline:
                raise PollTimeout(
                    f"task {task_id} still {task.status} after {policy.give_up_seconds:g} s"
                )
            self._sleep(policy.delay(attempt))
            attempt += 1

    # runs

    def list_runs(
        self,
        limit: int = 20,
        format: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
    ) -> RunsPage:
        params = {
            k: v
            for k, v in {
                "limit": limit,
                "format": format,
                "status": status,
                "cursor": cursor,
            }.items()
            if v is not None
        }
        data = self._call("GET", "/runs", params=params)
        return RunsPage(items=data["items"], next_cursor=data.get("next_cursor"))

    def get_run(self, run_id: str) -> dict:
        return self._call("GET", f"/runs/{run_id}")

    def download_location(self, run_id: str) -> str:
        """Where GET /runs/{id}/download redirects: a fresh signed URL."""
        response = self._send("GET", f"/runs/{run_id}/download", safe_to_resend=True)
        if response.status_code != 302:
            self._raise_for(response)
        return response.headers["location"]

    def export(self, run_id: str, fmt: str) -> Export:
        data = self._call("POST", f"/runs/{run_id}/export", json={"format": fmt})
        return Export(
            format=data["format"],
            download_url=data["download_url"],
            expires_at=data.get("expires_at"),
        )

    # downloads

    @contextmanager
    def stream(self, url: str) -> Iterator[httpx.Response]:
        """An open streaming response for a signed download URL the API gave (absolute; no API key is sent; a
        redirect is not followed: the signed URL is where the file is)."""
        with httpx.stream("GET", url, timeout=self._http.timeout, verify=TLS) as response:
            if response.status_code >= 400:
                response.read()
                self._raise_for(response)
            yield response

    def download_to(self, url: str, path: Path) -> int:
        """Stream a download into ``path`` in chunks; returns the byte count."""
        size = 0
        with self.stream(url) as response, path.open("wb") as out:
            for chunk in response.iter_bytes(CHUNK):
                out.write(chunk)
                size += len(chunk)
        return size

    # plumbing

    def _call(self, method: str, path: str, *, safe_to_resend: bool = True, **kwargs: Any) -> dict:
        response = self._send(method, path, safe_to_resend=safe_to_resend, **kwargs)
        if response.status_code >= 400:
            self._raise_for(response)
        return response.json()

    def _send(
        self, method: str, path: str, *, safe_to_resend: bool, **kwargs: Any
    ) -> httpx.Response:
        attempt = 0
        while True:
            retry_after = None
            endpoint, started = metrics.endpoint_label(path), time.perf_counter()
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                metrics.UPSTREAM_ERRORS.labels(endpoint, "transport").inc()
                resendable = safe_to_resend or isinstance(
                    exc, httpx.ConnectError | httpx.ConnectTimeout
                )
                if not resendable or attempt >= self._retry.retries:
                    raise UpstreamUnavailable(
                        f"the API could not be reached: {type(exc).__name__}"
                    ) from exc
            else:
                metrics.UPSTREAM_SECONDS.labels(method, endpoint).observe(
                    time.perf_counter() - started
                )
                if response.status_code >= 400 and response.status_code not in (404, 410):
                    status = response.status_code
                    metrics.UPSTREAM_ERRORS.labels(
                        endpoint, "429" if status == 429 else f"{status // 100}xx"
                    ).inc()
                    self.throttled += status == 429
                if not _retryable(response.status_code, safe_to_resend):
                    return response
                retry_after = _retry_after(response)
                if (
                    attempt >= self._retry.retries
                    or (retry_after or 0) > self._retry.max_retry_after_seconds
                ):
                    return response
            self._sleep(self._retry.delay(attempt, retry_after))
            attempt += 1

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        message = error.get("message") or f"the API answered {response.status_code}"
        args = {
            "status": response.status_code,
            "code": error.get("code", ""),
            "field": error.get("field"),
            "retry_after": _retry_after(response),
        }
        status = response.status_code
        kind: type[UpstreamError]
        if status in (401, 403):
            kind = UpstreamAuthError
        elif status == 404:
            kind = UpstreamNotFound
        elif status == 409:
            kind = UpstreamConflict
        elif status == 410:
            kind = RunExpired if error.get("code") in ("run_expired", "") else UpstreamNotFound
        elif status == 429 or status >= 500:
            kind = UpstreamUnavailable
        else:
            kind = UpstreamRejected
        raise kind(message, **args)


def _retryable(status: int, safe_to_resend: bool) -> bool:
    if status == 429 or status in (502, 503, 504):
        return True
    return status >= 500 and safe_to_resend  # a 500 on a POST may have done the work already


def _retry_after(response: httpx.Response) -> float | None:
    return retry_after(response.headers.get("retry-after"))
