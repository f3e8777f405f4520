"""Every destination kind, by name. Adding a platform is one folder and one line here."""

from __future__ import annotations

from . import callback, email, folder, gdrive, slack, slack_reply, webhook
from .base import Kind

KINDS: dict[str, Kind] = {
    "folder": folder.KIND,
    "webhook": webhook.KIND,
    "callback": callback.KIND,
    "slack": slack.KIND,
    "slack_reply": slack_reply.KIND,
    "gdrive": gdrive.KIND,
    "email": email.KIND,
}
