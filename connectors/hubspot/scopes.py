"""The scopes a HubSpot app needs for a write-back: the record's object (read, and write for its properties),
and, to attach the file, ``files`` and the contacts scopes the notes API asks for whatever the record is
(developers.hubspot.com, notes guide, "Scope requirements")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STANDARD = ("deals", "contacts", "companies", "tickets")
_NOUNS = {"deals": "deal", "contacts": "contact", "companies": "company", "tickets": "ticket"}
NOTES = ("crm.objects.contacts.read", "crm.objects.contacts.write")


@dataclass(frozen=True)
class Need:
    scope: str
    why: str
    """What it is for, in words: "to write the deal's properties"."""


def noun(object_type: str) -> str:
    """The record's object in words: "deal", or "record" for a custom object."""
    return _NOUNS.get(object_type, "record")


def object_scopes(object_type: str) -> tuple[str, str]:
    """(read, write) scope of a CRM object type; a custom object's are ``crm.objects.custom.*``."""
    group = object_type if object_type in STANDARD else "custom"
    return f"crm.objects.{group}.read", f"crm.objects.{group}.write"


def needed(config: dict[str, Any], object_type: str | None) -> list[Need]:
    """What a write-back with ``config`` to records of ``object_type`` (None: not known) needs."""
    needs = []
    if object_type:
        read, write = object_scopes(object_type)
        what = noun(object_type)
        needs += [Need(read, f"to read the {what}'s properties and notes")]
        if config.get("fields"):
            needs += [Need(write, f"to write the {what}'s properties")]
    if config.get("attach", True):
        needs += [
            Need("files", "to upload the file"),
            Need(NOTES[0], "to find the notes the relay made (HubSpot's notes API asks for it)"),
            Need(NOTES[1], "to make the note with the file (HubSpot's notes API asks for it)"),
        ]
    return needs
