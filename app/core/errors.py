"""The relay's failures that a caller is told about: a stable code, a message saying what to do, and the field
at fault. The subclass says what kind of failure it is; which HTTP status each kind answers is decided
once, at the web edge (app.web.errors), so the domain and the stores never speak HTTP."""

from __future__ import annotations

from typing import Any


class RelayError(Exception):
    """Raised as one of the kinds below (or a subclass of one), never bare: the kind picks the status.

    ``details`` are further keys of the error object (e.g. ``reason``, ``errors``); ``headers`` go with
    the answer (e.g. Retry-After, WWW-Authenticate)."""

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **details: Any,
    ):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.headers, self.details = headers or {}, details


class Invalid(RelayError):
    """The request cannot be taken as it is: the field says what to change."""


class Unauthorized(RelayError):
    """No credentials, or ones the relay does not know."""


class OverBudget(RelayError):
    """A capped credit budget is spent: nothing is started until it resets."""


class Forbidden(RelayError):
    """Credentials the relay knows, but which do not allow this (an expired or forged signed link)."""


class NotFound(RelayError):
    """Nothing with that id or key, for this caller."""


class Conflict(RelayError):
    """The thing is not in a state that allows this (ended, already done, still in progress)."""


class Gone(RelayError):
    """It existed, but is no longer to be had (an expired link, a document the API no longer serves)."""


class TooLarge(RelayError):
    """The request's body is over the limit."""


class Unprocessable(RelayError):
    """Well formed, but contradicting an earlier request (an Idempotency-Key reused with another body)."""


class UpstreamFailed(RelayError):
    """The API the relay works for failed at what was asked of it."""


class Unavailable(RelayError):
    """The relay cannot answer now (its storage is full, read-only or away): try again later."""
