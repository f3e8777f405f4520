"""A fake Teams Workflows webhook for tests and local runs, as Power Automate's "When a Teams webhook request
is received" trigger answers:

- **202 Accepted to any JSON it takes**, with an empty body: the card is posted by the flow's run, later. A
  body that is not an Adaptive Card message, or a message over 28 KB, makes the *run* fail ("Request Entity
  Too Large" is the Teams action's error); the caller still got 202 and never hears of it (fluxcd/flagger#1887,
  learn.microsoft.com/connectors/teams "Known issues and limitations"). The fake records each run in ``runs``.
  Only a body that is not JSON at all is refused at once (400 InvalidRequestContent, as a request trigger does).
- **Who can trigger the flow**: *Anyone* URLs carry a SAS signature (``sig``; a wrong one is 401
  DirectApiAuthorizationRequired); a flow set to *Any user in my tenant* (the default for new flows,
  learn.microsoft.com/power-automate/oauth-authentication) has a URL without ``sig`` and needs an Entra bearer
  token for ``https://service.flow.microsoft.com/`` (``tenant_url``; 401 without one).
- Both URL shapes: ``*.logic.azure.com/workflows/...`` and ``*.environment.api.powerplatform.com/powerautomate/
  automations/direct/workflows/...``.
- 429 with Retry-After past 4 requests a second per workflow (learn.microsoft.com "Create incoming webhooks").

Knobs: connectors.fake_knobs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from flask import Flask, jsonify, request

from ..fake_knobs import Knobs, Window

CARD = "application/vnd.microsoft.card.adaptive"
MAX_MESSAGE_BYTES = 28 * 1024
"""The Teams action's message limit ("about 28 KB"); past it the run fails."""
FLOW_AUDIENCE = "https://service.flow.microsoft.com/"


@dataclass(frozen=True)
class Run:
    """One run of the flow the trigger started: what the caller never sees."""

    workflow: str
    status: str
    """"Succeeded" or "Failed"."""
    error: str = ""
    """The failed action's error, as the run history shows it."""


@dataclass
class FakeTeams:
    signature: str = "good-signature"
    tokens: set[str] = field(default_factory=set)
    """Entra tokens (audience the flow service) that a tenant-only workflow accepts."""
    posted: list[dict] = field(default_factory=list)
    """The cards the flow's runs posted (each message's first attachment's content)."""
    posted_at: list[float] = field(default_factory=list)
    """time.monotonic() of each card posted."""
    runs: list[Run] = field(default_factory=list)
    """Every run the trigger started, succeeded or failed."""
    retry_after: int = 1
    knobs: Knobs = field(default_factory=Knobs)
    limit: Window = field(default_factory=lambda: Window(4, 1.0))
    base: str = ""

    @property
    def failed_runs(self) -> list[Run]:
        return [run for run in self.runs if run.status == "Failed"]

    def app(self) -> Flask:
        app = Flask(__name__)
        for prefix in ("", "/powerautomate/automations/direct"):
            app.add_url_rule(
                f"{prefix}/workflows/<workflow>/triggers/manual/paths/invoke",
                endpoint=f"invoke{prefix}",
                view_func=self._invoke,
                methods=["POST"],
            )
        return app

    def url(self, base: str, signature: str | None = None) -> str:
        """An *Anyone* workflow's URL (the classic logic.azure.com shape), signed."""
        return (
            f"{base}/workflows/0f1e2d3c/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual"
            f"%2Frun&sv=1.0&sig={signature or self.signature}"
        )

    def tenant_url(self, base: str) -> str:
        """An *Any user in my tenant* workflow's URL (the powerplatform.com shape): no signature."""
        return (
            f"{base}/powerautomate/automations/direct/workflows/9a8b7c6d/triggers/manual/paths/invoke"
            "?api-version=1"
        )

    def _invoke(self, workflow: str):
        if refused := self._unauthorized():
            return refused
        if self.knobs.too_many(request.method, request.path, self.retry_after, self.limit):
            response = _error(
                429, "TooManyRequests", "Rate limit is exceeded. Try again in 1 seconds."
            )
            response.headers["Retry-After"] = str(self.retry_after)
            return response
        raw = request.get_data()
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return _error(
                400,
                "InvalidRequestContent",
                "The request content is not valid and could not be deserialized.",
            )
        self.runs.append(self._run(workflow, body, len(raw)))
        return "", 202

    def _unauthorized(self):
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if "sig" in request.args:
            if request.args["sig"] == self.signature:
                return None
            return _error(
                401,
                "DirectApiAuthorizationRequired",
                "The request must be authenticated only by Shared Access scheme.",
            )
        if bearer and bearer in self.tokens:
            return None
        return _error(
            401,
            "DirectApiAuthorizationRequired",
            "The request must be authenticated only by Bearer scheme.",
        )

    def _run(self, workflow: str, body: object, size: int) -> Run:
        """The flow's run: the Teams action posts the card, or fails (unseen by the caller)."""
        message = body if isinstance(body, dict) else {}
        attachments = message.get("attachments") or []
        first = attachments[0] if attachments and isinstance(attachments[0], dict) else {}
        content = first.get("content") if isinstance(first.get("content"), dict) else {}
        if message.get("type") != "message" or first.get("contentType") != CARD:
            return Run(
                workflow, "Failed", "InvalidTemplate: the body has no Adaptive Card attachment"
            )
        if content.get("type") != "AdaptiveCard" or not isinstance(content.get("body"), list):
            return Run(workflow, "Failed", "BadRequest: the Adaptive Card is not valid")
        if size > MAX_MESSAGE_BYTES:
            return Run(workflow, "Failed", "RequestEntityTooLarge: Request Entity Too Large")
        self.posted.append(content)
        self.posted_at.append(time.monotonic())
        return Run(workflow, "Succeeded")


def _error(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response
