"""What every destination kind implements, and what the relay hands it. No relay import here: a
connector sees only these types, so a new platform is one folder plus one line in the registry."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import httpx

from .retry_after import retry_after as _retry_after

CHUNK = 256 * 1024  # also Google Drive's chunk granule


class ChunkReader:
    """Takes exact byte counts from a stream of chunks, one chunk in memory at a time: each request body of a
    chunked upload is streamed, never assembled (a 4 MiB buffer per chunk cost ~140 MiB of RSS on a 1 GiB
    upload to Drive)."""

    def __init__(self, chunks: Iterator[bytes], receiver: str):
        self._chunks, self._left, self._receiver = iter(chunks), b"", receiver

    def take(self, count: int) -> Iterator[bytes]:
        while count > 0:
            if not self._left:
                self._left = next(self._chunks, b"")
                if not self._left:
                    raise Retryable(f"the document ended before {self._receiver} had all of it")
            piece, self._left = self._left[:count], self._left[count:]
            count -= len(piece)
            yield piece


class DeliveryError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Retryable(DeliveryError):
    """Worth another attempt later (throttling, 5xx, connection trouble)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Throttled(Retryable):
    """The platform (or its pace) said to wait: retried after ``retry_after`` without spending one of the
    delivery's attempts, for as long as the relay lets a delivery be held back
    (RELAY_DELIVERY_THROTTLE_SECONDS), then counted as any Retryable."""


class Permanent(DeliveryError):
    """Will fail the same way again (bad config, 4xx): goes straight to the dead-letter list."""


class Gone(Permanent):
    """The receiver asked us to stop (410): the subscription behind it is removed."""


@dataclass(frozen=True)
class Document:
    """The finished file, streamed: ``open(offset)`` yields its bytes from ``offset`` in chunks and can be
    called again (a resumed upload re-reads from where the receiver stopped)."""

    name: str
    content_type: str
    size: int | None
    open: Callable[[int], AbstractContextManager[Iterator[bytes]]]
    link: str = ""
    """A signed, expiring link that always leads to a fresh download (for messages and large emails)."""


_HEADLINES = {
    "batch.completed": "Your batch has ended",
    "budget.threshold": "A credit budget is running out",
}


def headline(event: dict[str, Any]) -> str:
    """What a message about the event says first: a document is ready, a batch has ended, a budget..."""
    return _HEADLINES.get(str(event.get("type")), "Your document is ready")


def summary(event: dict[str, Any]) -> str:
    """The text of a message about the event: the document's summary, or the batch's counts."""
    data = event.get("data") or {}
    return str(
        (data.get("result") or {}).get("summary") or data.get("summary") or f"{headline(event)}."
    )


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    kind: str
    config: dict[str, Any]
    """The destination's config, secrets decrypted."""
    event: dict[str, Any]
    """The relay event that caused it (task.completed, task.failed), data = the task."""
    state: dict[str, Any] = field(default_factory=dict)
    """What earlier attempts recorded (an upload session, a message id)."""
    tenant_id: str = ""
    """Whose delivery it is: what keeps one tenant's files out of another's (the folder kind's root)."""


@dataclass(frozen=True)
class Outcome:
    location: str
    """Where it went, for people: a file path, a Drive file id, a Slack message."""
    external_id: str = ""
    accepted: bool = False
    """The platform took it to deliver later and will not say whether it did (a Teams workflow's 202): the
    delivery is recorded as accepted, not delivered."""


@dataclass
class Environment:
    """Services the relay lends to connectors."""

    http: Callable[..., AbstractContextManager[httpx.Client]]
    """``with env.http(timeout=...) as client``: a pooled httpx client that refuses private addresses
    (unless allowed) and never follows redirects."""
    save_state: Callable[[str, dict[str, Any]], None]
    """Record progress of a delivery (e.g. a resumable upload's session URL) that survives a crash."""
    pace: Callable[[Pace], None] = lambda pace: None
    """``env.pace(Pace(...))`` right before a request the platform limits: waits for a near slot of that
    schedule, shared by every worker and taken as the request is sent, or raises ``Throttled`` (with the
    wait as ``retry_after``) when the next free slot is further off than a worker holds a delivery for."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Per-kind settings from the relay's config (API base URLs, folder roots, size limits), and the outbound
    policy's transports for SDKs, which follow no redirect and connect only to checked addresses:
    ``session(timeout=None)`` (requests), ``pin_pools(urllib3_pool_manager)``, ``connect(host, port)``
    (the address to open a socket to)."""


@dataclass(frozen=True)
class Pace:
    """A limit on calls to one place (a Slack channel, a Teams workflow; the relay's polls of the API for a
    tenant), which the relay keeps to across workers: ``per_second`` on average, ``burst`` at once."""

    key: str
    """Names the destination and nothing secret (a digest of a URL or token, not the URL)."""
    per_second: float
    burst: int = 1
    what: str = ""
    """The limit in words, for a delivery's status ("Google Sheets' 60 writes a minute per user")."""


class Verdict(StrEnum):
    """How one check of a destination came out, as the API shows it."""

    PASS = "pass"
    WARNING = "warning"
    """A delivery will work, but something will bite later (a token that expires, a plan's limit)."""
    FAILURE = "failure"
    """A delivery would fail: the fix says what to change."""


@dataclass(frozen=True)
class Check:
    """One thing a delivery will need, checked when a destination is saved, without delivering."""

    name: str
    """What was checked, short: "signs in", "token has the scope files"."""
    verdict: Verdict
    message: str
    """What was found, in plain words."""
    fix: str = ""
    """What the user should change, for a warning or a failure."""


class Kind(Protocol):
    name: str
    needs_document: bool
    """False for kinds that send only JSON (webhooks, callbacks)."""

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        """Sign in and verify, without delivering a document, what a delivery to ``target`` will need (the
        folder is writable, the token has each scope, the bot is in the channel). ``target`` is a delivery
        with no event (``event`` empty, ``delivery_id`` "check"): its kind, config and tenant. Each call
        goes through ``env`` as a delivery's would; a check that cannot be made is a ``Verdict.FAILURE``
        with the reason, never an exception (one that escapes is reported as a failure by the relay)."""

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        """The result of an earlier attempt that already succeeded, if the destination can tell."""

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        """Deliver, streaming; raise Retryable or Permanent."""


class SdkFileKind:
    """A file kind whose work is in ``connectors/<name>/writer.py`` (``find_existing`` and ``deliver``),
    imported on first use: the platform's SDK (boto3, msal, Dropbox's) loads only in a process that
    delivers there."""

    needs_document = True

    def __init__(self, name: str):
        self.name = name

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        return self._writer().find_existing(delivery, env)

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        return self._writer().check(target, env)

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        assert document is not None
        return self._writer().deliver(delivery, document, env)

    def _writer(self) -> Any:
        return importlib.import_module(f"connectors.{self.name}.writer")


def digest(secret: str) -> str:
    """A short name for a secret value (a token, a signed URL) that gives nothing of it away."""
    return hashlib.sha256(secret.encode()).hexdigest()[:20]


def classify_status(status: int, retry_after: str | None, what: str) -> DeliveryError:
    """The house rule for HTTP answers: 408/409/425/429 and 5xx are worth retrying, 410 means stop,
    any other 4xx is permanent."""
    if status == 410:
        return Gone(f"{what} answered 410 Gone")
    if status in (408, 409, 425, 429) or status >= 500:
        return Retryable(f"{what} answered {status}", retry_after=_retry_after(retry_after))
    return Permanent(f"{what} answered {status}")


class RecordKind(Kind, Protocol):
    """A kind that writes back to the record a document belongs to (a CRM record, a table row): its status on
    ``task.started``, then the result on the task's end. Record keys ``<scheme>:...`` name its records."""

    scheme: str

    def parse_record(self, record_key: str) -> dict[str, str]:
        """The parts of a record key of this scheme; raises ValueError saying what a key looks like."""
