"""A fake Teams Workflows webhook for tests and local runs, as Power Automate's "When a Teams webhook request
is received" trigger answers: 202 Accepted for a message with an Adaptive Card attachment, 400 for a body
that is not one, 401 DirectApiAuthorizationRequired for a URL whose ``sig`` is wrong, 413 past 28 KB, and
429 with Retry-After past 4 requests per second. Knobs: connectors.fake_knobs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import Flask, jsonify, request

from ..fake_knobs import Knobs, Window

CARD = "application/vnd.microsoft.card.adaptive"


@dataclass
class FakeTeams:
    signature: str = "good-signature"
    posted: list[dict] = field(default_factory=list)
    """The cards posted (each message's first attachment's content)."""
    posted_at: list[float] = field(default_factory=list)
    """time.monotonic() of each card taken."""
    retry_after: int = 1
    knobs: Knobs = field(default_factory=Knobs)
    limit: Window = field(default_factory=lambda: Window(4, 1.0))

    def app(self) -> Flask:
        app = Flask(__name__)
        app.add_url_rule(
            "/workflows/<workflow>/triggers/manual/paths/invoke",
            view_func=self._invoke,
            methods=["POST"],
        )
        return app

    def url(self, base: str, signature: str | None = None) -> str:
        return (
            f"{base}/workflows/0f1e2d3c/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual"
            f"%2Frun&sv=1.0&sig={signature or self.signature}"
        )

    def _invoke(self, workflow: str):
        if request.args.get("sig") != self.signature:
            return _error(
                401,
                "DirectApiAuthorizationRequired",
                "The request must be authenticated only by Shared Access scheme.",
            )
        if self.knobs.too_many(request.method, request.path, self.retry_after, self.limit):
            response = _error(
                429, "TooManyRequests", "Rate limit is exceeded. Try again in 1 seconds."
            )
            response.headers["Retry-After"] = str(self.retry_after)
            return response
        if request.content_length and request.content_length > 28 * 1024:
            return _error(413, "MessageTooLarge", "The message is larger than 28 KB.")
        body = request.get_json(silent=True) or {}
        attachments = body.get("attachments") or []
        if (
            body.get("type") != "message"
            or not attachments
            or attachments[0].get("contentType") != CARD
        ):
            return _error(
                400, "InvalidRequestContent", "The request content is not an Adaptive Card message."
            )
        self.posted.append(attachments[0]["content"])
        self.posted_at.append(time.monotonic())
        return "", 202


def _error(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response
