"""Every destination kind, by name. Adding a platform is one folder and one line here."""

from __future__ import annotations

from . import (
               airtable,
               callback,
               dropbox,
               email,
               folder,
               gdrive,
               hubspot,
               onedrive,
               s3,
               sheets,
               slack,
               slack_reply,
               teams,
               webhook,
)
from .base import Kind, RecordKind

KINDS: dict[str, Kind] = {
    "folder": folder.KIND,
    "webhook": webhook.KIND,
    "callback": callback.KIND,
    "slack": slack.KIND,
    "slack_reply": slack_reply.KIND,
    "gdrive": gdrive.KIND,
    "email": email.KIND,
    "s3": s3.KIND,
    "onedrive": onedrive.KIND,
    "dropbox": dropbox.KIND,
    "teams": teams.KIND,
    "hubspot": hubspot.KIND,
    "airtable": airtable.KIND,
    "sheets": sheets.KIND,
}

RECORD_KINDS: dict[str, RecordKind] = {name: kind for name, kind in KINDS.items() if hasattr(kind, "scheme")}
"""The kinds that write back to the record a document belongs to; a connection of one is a saved destination."""
