"""The table of HTTP statuses (app.web.errors): every kind of RelayError the web app can meet has one, and
an error is answered in the JSON error format with its details and headers."""

from __future__ import annotations

import app.web  # noqa: F401 - every module whose errors reach the web app
from app.core.errors import RelayError, Unavailable
from app.stores.idempotency import RequestInProgress
from app.web.errors import STATUS, wire


def subclasses(kind: type) -> set[type]:
    direct = set(kind.__subclasses__())
    return direct.union(*(subclasses(sub) for sub in direct))


def test_every_relay_error_has_a_status():
    # a class with subclasses may be only a name to catch them by (write_back.WriteBackRefused)
    unmapped = [
        f"{kind.__module__}.{kind.__qualname__}"
        for kind in subclasses(RelayError)
        if not kind.__subclasses__() and not any(ancestor in STATUS for ancestor in kind.__mro__)
    ]
    assert not unmapped, f"subclass one of the kinds in app.core.errors: {unmapped}"


def test_an_error_in_the_json_format():
    busy = wire(RequestInProgress())
    assert (busy.status, busy.headers) == (409, {"Retry-After": "1"})
    assert busy.body() == {
        "error": {
            "code": "request_in_progress",
            "message": "A request with this Idempotency-Key is still being processed.",
            "field": "Idempotency-Key",
        }
    }
    # details after the message, and no field when there is none
    full = wire(Unavailable("storage_unavailable", "Full.", reason="full"))
    assert full.status == 503
    assert list(full.body()["error"].items()) == [
        ("code", "storage_unavailable"),
        ("message", "Full."),
        ("reason", "full"),
    ]
