"""Slack: the file goes into a channel or thread through Slack's 3-step external upload (get an upload
URL, stream the bytes to it, complete the upload with the summary and a link as its comment). A
workspace that restricts uploads (their size, all of them, or the file's type) gets the summary and the
link as a message instead.

The bot must be a member of the channel to share a file there (``not_in_channel``): the relay joins a public
channel when the app has channels:join, and otherwise says to invite the bot. Each request keeps to Slack's
limits on a schedule every worker shares (``env.pace``): about a message a second per channel, and the files
methods' Tier 4 (100 a minute per workspace); a 429 waits its Retry-After without spending an attempt
(docs/platforms.md, "Slack").

Slack cannot tell whether an upload was already shared, so a worker killed between completing the
upload and recording it can post twice; every other crash point resumes from the recorded step.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from .. import naming
from ..base import (
    Check,
    Delivery,
    Document,
    Environment,
    Outcome,
    Pace,
    Permanent,
    Retryable,
    Throttled,
    digest,
    summary,
)
from ..retry_after import retry_after

_RETRYABLE = {
    "fatal_error",
    "internal_error",
    "service_unavailable",
    "request_timeout",
}
_LINK_ONLY = {
    "file_upload_size_restricted",
    "file_uploads_disabled",
    "file_uploads_except_images_disabled",
    "file_type_not_allowed",
}
"""A workspace's upload policies (files.getUploadURLExternal): the summary and the link go as a message."""
PACE_SHARE = 0.8
"""The share of Slack's rates the relay's paces take: a request goes after its slot by as much as its worker
is slow."""


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

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        from .checks import check

        return check(target, env)

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
                env.pace(files_pace(config, env))
                answer = call(
                    client.files_getUploadURLExternal, filename=name, length=document.size
                )
                state.update(file_id=answer["file_id"], upload_url=answer["upload_url"])
                env.save_state(delivery.delivery_id, state)
                _stream(state["upload_url"], document, env)
                state["uploaded"] = True
                env.save_state(delivery.delivery_id, state)
            kwargs = {"thread_ts": config["thread_ts"]} if config.get("thread_ts") else {}

            def share() -> dict:
                env.pace(files_pace(config, env))
                env.pace(channel_pace(config, env))  # the comment is a message in the channel
                return call(
                    client.files_completeUploadExternal,
                    files=[{"id": state["file_id"], "title": name}],
                    channel_id=config["channel"],
                    initial_comment=comment,
                    **kwargs,
                )

            in_channel(client, config["channel"], share)
        except _UploadsRestricted:
            return self._link_only(client, config, comment, delivery, env)
        location = f"slack:{config['channel']}/{state['file_id']}"
        env.save_state(delivery.delivery_id, {**state, "message": location})
        return Outcome(location, state["file_id"])

    def _link_only(
        self, client: WebClient, config: dict, comment: str, delivery: Delivery, env: Environment
    ) -> Outcome:
        kwargs = {"thread_ts": config["thread_ts"]} if config.get("thread_ts") else {}
        answer = post_message(client, config, env, text=comment, **kwargs)
        location = f"slack:{config['channel']}/message {answer['ts']} (link only)"
        env.save_state(delivery.delivery_id, {"message": location})
        return Outcome(location, answer["ts"])


def files_pace(config: dict, env: Environment) -> Pace:
    """The files methods' Tier 4, per workspace (its bot token names it)."""
    per_minute = float(env.settings.get("slack_files_per_minute", 100.0))
    return Pace(
        f"slack-files:{digest(config['bot_token'])}",
        per_second=per_minute / 60 * PACE_SHARE,
        what=f"Slack's {per_minute:g} file uploads a minute per workspace (Tier 4)",
    )


def channel_pace(config: dict, env: Environment) -> Pace:
    """About a message a second per channel (chat.postMessage's limit; a file's share posts one)."""
    per_second = float(env.settings.get("slack_messages_per_second", 1.0))
    return Pace(
        f"slack:{digest(config['bot_token'])}:{config['channel']}",
        per_second=per_second,
        what=f"Slack's {per_second:g} message a second per channel",
    )


def post_message(client: WebClient, config: dict, env: Environment, **kwargs) -> dict:
    """chat.postMessage to the config's channel, in its pace, joining the channel if it must (shared with
    slack_reply)."""

    def post() -> dict:
        env.pace(channel_pace(config, env))
        return call(client.chat_postMessage, channel=config["channel"], **kwargs)

    return in_channel(client, config["channel"], post)


def in_channel(client: WebClient, channel: str, request: Callable[[], dict]) -> dict:
    """``request()``; if the bot is not in the channel, join it (a public channel, with channels:join) and
    make it again, else say how to let the bot in."""
    try:
        return request()
    except _NotInChannel:
        why = join(client, channel)
        if why:
            raise Permanent(
                f"Slack: the bot is not in the channel {channel} and cannot join it ({why}). Invite "
                f"the bot to the channel: in Slack, /invite @Overten in {channel}"
            ) from None
    try:
        return request()
    except _NotInChannel:
        raise Permanent(
            f"Slack: the bot joined {channel} but Slack still refused: not_in_channel"
        ) from None


def join(client: WebClient, channel: str) -> str:
    """Join the channel: "" when the bot is in, else why it cannot (a private channel, no channels:join)."""
    try:
        client.conversations_join(channel=channel)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        if exc.response is not None and (exc.response.status_code == 429 or error in _RETRYABLE):
            raise _sorted(exc) from None
        return {
            "missing_scope": "the app lacks the channels:join scope",
            "method_not_supported_for_channel_type": "a private channel can only be joined by invite",
            "channel_not_found": "a private channel, or one the bot cannot see",
            "is_archived": "the channel is archived",
        }.get(error, error or "Slack refused")
    except (httpx.TransportError, OSError) as exc:
        raise Retryable(f"Slack could not be reached: {type(exc).__name__}") from None
    return ""


class _UploadsRestricted(Exception):
    pass


class _NotInChannel(Exception):
    pass


def _comment(delivery: Delivery, document: Document) -> str:
    return f"{summary(delivery.event)}\n<{document.link}|Download {document.name}>"


def call(method, **kwargs) -> dict:
    """One Web API call, its errors sorted into Throttled, Retryable and Permanent (shared with
    slack_reply and the check)."""
    try:
        return method(**kwargs).data  # type: ignore[no-any-return]
    except SlackApiError as exc:
        error = exc.response.get("error", "") if exc.response is not None else ""
        if error in _LINK_ONLY:
            raise _UploadsRestricted from None
        if error == "not_in_channel":
            raise _NotInChannel from None
        raise _sorted(exc, str(kwargs.get("channel_id") or kwargs.get("channel") or "")) from None
    except (httpx.TransportError, OSError) as exc:
        raise Retryable(f"Slack could not be reached: {type(exc).__name__}") from None


def _sorted(exc: SlackApiError, channel: str = "") -> Exception:
    error = exc.response.get("error", "") if exc.response is not None else ""
    status = exc.response.status_code if exc.response is not None else 0
    wait = exc.response.headers.get("Retry-After") if exc.response is not None else None
    if status == 429 or error == "ratelimited":
        return Throttled(f"Slack: {error or status}", retry_after(wait))
    if status >= 500 or error in _RETRYABLE:
        return Retryable(f"Slack: {error or status}", retry_after(wait))
    if error == "missing_scope":
        needed = exc.response.get("needed", "") if exc.response is not None else ""
        return Permanent(
            f"Slack refused: missing_scope (the app needs {needed or 'another scope'}; add it in the "
            "app's OAuth & Permissions and reinstall it)"
        )
    if error == "channel_not_found" and channel:
        return Permanent(
            f"Slack refused: channel_not_found (no channel {channel}, or a private channel the bot was "
            f"not invited to). Invite the bot to the channel: in Slack, /invite @Overten in {channel}"
        )
    return Permanent(f"Slack refused: {error or status}")


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
