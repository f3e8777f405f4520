"""POST /webhooks/upstream/{token}: the API's signed task events, served by a WSGI app of its own.

This is the relay's hottest path: every task sends its progress and its end here. Flask's request
machinery (the request context, the app's before- and after-request hooks, jsonify) cost more CPU than
verifying and storing the webhook, so the path is mounted in front of Flask with werkzeug's
DispatcherMiddleware (app.web.create_app) and answers in the same JSON error format (decision 0014).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from http import HTTPStatus

from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from app.core import logs, metrics
from app.core.errors import RelayError, TooLarge
from app.domain import intake
from app.stores.context import Context
from app.web.base import storage_error
from app.web.errors import wire
from app.web.openapi import ERROR, HOOKS, JSON, ROUTES, Route
from schemas.http import ApiError, bug, from_http_exception

PREFIX = "/webhooks/upstream"
# no Flask rule to declare it at (it is mounted in front of Flask): documented here
ROUTES.append(
    Route(
        "POST",
        PREFIX + "/{token}",
        "The API's signed task events (Standard Webhooks)",
        HOOKS,
        {200: None, 400: ERROR, 401: ERROR, 413: ERROR},
        body="upstream/task-event-received.json",
        auth=False,
        response_type={200: JSON},
    )
)
_ANSWERS = {
    fresh: json.dumps({"status": "accepted" if fresh else "duplicate"}).encode()
    for fresh in (True, False)
}
# all the check reads
_SIGNATURE_HEADERS = [
    (name, "HTTP_" + name.upper().replace("-", "_"))
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
]
_COUNTED = {
    fresh: metrics.WEBHOOKS.labels("accepted" if fresh else "duplicate") for fresh in (True, False)
}


class UpstreamIntake:
    """The WSGI app under PREFIX: its PATH_INFO is ``/{token}``."""

    def __init__(self, ctx: Context):
        self._ctx = ctx

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        logs.reset()  # a gunicorn thread serves many requests: start each with no log fields
        try:
            fresh = self._accept(environ)
        except RelayError as error:
            return _refuse(start_response, wire(error))
        except ApiError as error:  # werkzeug's refusals, and bugs
            return _refuse(start_response, error)
        # reached only once the event is stored and its work queued: now the sender may forget it
        return _send(start_response, 200, _ANSWERS[fresh], {})

    def _accept(self, environ: dict) -> bool:
        token = environ.get("PATH_INFO", "").removeprefix("/")
        try:
            if not token or "/" in token:
                raise NotFound()
            if environ.get("REQUEST_METHOD") != "POST":
                raise MethodNotAllowed(valid_methods=["POST"])
            # a declared length over the limit is refused unread; a chunked body is read one byte past it
            body = get_input_stream(environ, max_content_length=intake.MAX_BODY + 1).read()
            if len(body) > intake.MAX_BODY:
                raise RequestEntityTooLarge()
        except RequestEntityTooLarge:
            metrics.WEBHOOKS.labels("rejected_size").inc()
            raise TooLarge("payload_too_large", "The webhook body is larger than 1 MiB.") from None
        except HTTPException as exc:
            raise from_http_exception(exc) from None
        headers = {name: environ[key] for name, key in _SIGNATURE_HEADERS if key in environ}
        try:
            fresh = intake.accept(self._ctx, token, body, headers)
        except RelayError as exc:
            metrics.WEBHOOKS.labels(f"rejected_{exc.code.removeprefix('invalid_')}").inc()
            raise
        except RedisError as exc:
            raise storage_error(exc) or bug() from None
        except Exception:
            raise bug() from None
        _COUNTED[fresh].inc()
        return fresh


def _refuse(start_response: Callable, error: ApiError) -> list[bytes]:
    return _send(start_response, error.status, json.dumps(error.body()).encode(), error.headers)


def _send(
    start_response: Callable, status: int, body: bytes, headers: dict[str, str]
) -> list[bytes]:
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *headers.items(),
        ],
    )
    return [body]
