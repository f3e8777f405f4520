"""Slack: the file goes into a channel or thread through Slack's 3-step external upload (get an upload
URL, stream the bytes to it, complete the upload with the summary and a link as its comment). A
workspace that restricts large uploads gets the summary and the link as a message instead.

Slack cannot tell whether an upload was already shared, so a worker killed between completing the
upload and recording it can post twice; every other crash point resumes from the recorded step.
"""

from __future__ import annotations

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from .. import naming
from ..base import (
    Delivery,
    Document,
    Environment,
    Outcome,
    Pace,
    Permanent,
    Retryable,
    digest,
    summary,
)
from ..retry_after import retry_after

_RETRYABLE = {
    "ratelimited",
    "fatal_error",
    "internal_error",
    "service_unavailable",
    "request_timeout",
}


class PolicyWebClient(WebClient):
    """slack_sdk's Web API client whose requests go through the relay's outbound client: urllib, which it uses
    otherwise, follows redirects anywhere and connects to whatever the name resolves to by then."""

    def __init__(self, env: Environment, **kwargs):
        super().__init__(**kwargs)
        self._env = env

    def _perform_urllib_http_request_internal(self, url: str, req) -> dict:
        headers = {name: str(value) for name, value in req.header_items()}
        with self._env.http(timeout=self.timeout) as client:
            answer = client.request(req.get_method(), url, content=req.data, headers=headers)
        return {"status": answer.status_code, "headers": answer.headers, "body": answer.text}


def web_client(config: dict, env: Environment) -> WebClient:
    return PolicyWebClient(
        env, token=config["bot_token"], base_url=env.settings["slack_api_url"], timeout=30
    )


class SlackKind:
    name = "slack"
    needs_document = True

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        done = delivery.state.get("message")
        return Outcome(done, delivery.state.get("file_id", "")) if done else None

    def pace(self, delivery: Delivery) -> Pace:
        """Slack posts about 1 message a second to a channel (chat.postMessage's limit; the file's share is one)."""
        config = delivery.config
        return Pace(f"slack:{digest(config['bot_token'])}:{config['channel']}", per_second=1.0)

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        config, state = delivery.config, dict(delivery.state)
        client = web_client(config, env)
        if document is None:  # an alert: words only
            return self._link_only(client, config, summary(delivery.event), delivery, env)
        comment, name = _comment(delivery, document), naming.file_name(delivery, document)
        if document.size is None:
            return self._link_only(client, config, comment, delivery, env)
        try:
            if not state.get("uploaded"):
                answer = call(
                    client.files_getUploadURLExternal, filename=name, length=document.size
                )
                state.update(file_id=answer["file_id"], upload_url=answer["upload_url"])
                env.save_state(delivery.delivery_id, state)
                _stream(state["upload_url"], document, env)
                state["uploaded"] = True
                env.save_state(delivery.delivery_id, state)
            kwargs = {"thread_ts": config["thread_ts"]} if config.get("thread_ts") else {}
            call(
                client.files_completeUploadExternal,
                files=[{"id": state["file_id"], "title": name}],
                channel_id=config["channel"],
                initial_comment=comment,
                **kwargs,
            )
        except _SizeRestricted:
            return self._link_only(client, config, comment, delivery, env)
        location = f"slack:{config['channel']}/{state['file_id']}"
        env.save_state(delivery.delivery_id, {**state, "message": location})
        return Outcome(location, state["file_id"])

    def _link_only(
        self, client: WebClient, config: dict, comment: str, delivery: Delivery, env: Environment
    ) -> Outcome:
        kwargs = {"thread_ts": config["thread_ts"]} if config.get("thread_ts") else {}
        answer = call(client.chat_postMessage, channel=config["channel"], text=comment, **kwargs)
        location = f"slack:{config['channel']}/message {answer['ts']} (link only)"
        env.save_state(delivery.delivery_id, {"message": location})
        return Outcome(location, answer["ts"])


class _SizeRestricted(Exception):
    pass


def _comment(delivery: Delivery, document: Document) -> str:
    return f"{summary(delivery.event)}\n<{document.link}|Download {document.name}>"


def call(method, **kwargs) -> dict:
    """One Web API call, its errors sorted into Retryable and Permanent (shared with slack_reply)."""
    try:
        return method(**kwargs).data  # type: ignore[no-any-return]
    except SlackApiError as exc:
        error = exc.response.get("error", "") if exc.response is not None else ""
        status = exc.response.status_code if exc.response is not None else 0
        if error == "file_upload_size_restricted":
            raise _SizeRestricted from None
        if status == 429 or status >= 500 or error in _RETRYABLE:
            wait = exc.response.headers.get("Retry-After") if exc.response is not None else None
            raise Retryable(f"Slack: {error or status}", retry_after(wait)) from None
        raise Permanent(f"Slack refused: {error or status}") from None
    except (httpx.TransportError, OSError) as exc:
        raise Retryable(f"Slack could not be reached: {type(exc).__name__}") from None


def _stream(upload_url: str, document: Document, env: Environment) -> None:
    headers = {"Content-Length": str(document.size), "Content-Type": "application/octet-stream"}
    try:
        with document.open(0) as chunks, env.http(timeout=300) as client:
            response = client.post(upload_url, content=chunks, headers=headers)
    except httpx.TransportError as exc:
        raise Retryable(f"the upload to Slack broke off: {type(exc).__name__}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise Retryable(f"Slack's upload service answered {response.status_code}")
    if response.status_code != 200:
        raise Permanent(f"Slack's upload service answered {response.status_code}")


KIND = SlackKind()
