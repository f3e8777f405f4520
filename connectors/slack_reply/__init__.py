"""The last word of an /overten command: tells the person who ran it how it ended. Through the
command's response_url while it is valid (30 minutes, 5 uses; the command flow keeps one use for this),
else with chat.postMessage and the workspace's bot token, mentioning them."""

from __future__ import annotations

import time

import httpx

from ..base import Delivery, Document, Environment, Outcome, Permanent, Retryable
from ..slack import post_message, web_client

_SPENT = ("expired_url", "used_url", "no_text")  # response_url answers with these once it is no use


class SlackReplyKind:
    name = "slack_reply"
    needs_document = False

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        done = delivery.state.get("sent")
        return Outcome(done) if done else None

    def deliver(
        self,
        delivery: Delivery,
        document: Document | None,
        env: Environment,
        now: float | None = None,
    ) -> Outcome:
        """``now``: the time to judge the response_url's deadline by (the clock's unless a test sets it)."""
        config, text = delivery.config, final_text(delivery.event)
        now = time.time() if now is None else now
        if now < float(config["deadline"]) and self._respond(config["response_url"], text, env):
            return self._sent(delivery, env, "the command's response_url")
        client = web_client(config, env)
        answer = post_message(client, config, env, text=f"<@{config['user']}> {text}")
        return self._sent(delivery, env, f"slack:{config['channel']}/message {answer['ts']}")

    def _respond(self, url: str, text: str, env: Environment) -> bool:
        """Through the outbound client: the response_url is checked at connect time and no redirect followed."""
        try:
            with env.http(timeout=15) as client:
                response = client.post(url, json={"text": text, "response_type": "ephemeral"})
        except (httpx.TransportError, OSError) as exc:
            raise Retryable(
                f"Slack's response_url could not be reached: {type(exc).__name__}"
            ) from None
        if response.status_code == 200:
            return True
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(f"Slack's response_url answered {response.status_code}")
        if any(reason in response.text for reason in _SPENT) or response.status_code == 404:
            return False  # used up or expired: fall back to the bot token
        raise Permanent(f"Slack's response_url refused the message ({response.status_code})")

    def _sent(self, delivery: Delivery, env: Environment, where: str) -> Outcome:
        env.save_state(delivery.delivery_id, {"sent": where})
        return Outcome(where)


def final_text(event: dict) -> str:
    task = event.get("data") or {}
    if task.get("status") == "completed":
        summary = (task.get("result") or {}).get("summary") or "your document is ready."
        link = f" <{task['file_url']}|Download>" if task.get("file_url") else ""
        return f":white_check_mark: Done: {summary}{link}"
    error = (task.get("error") or {}).get("message") or task.get("status", "ended")
    return f":x: The document could not be made: {error}"


KIND = SlackReplyKind()
