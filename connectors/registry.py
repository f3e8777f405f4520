"""Every destination kind, by name. Adding a platform is one folder and one line here.

A kind's package is imported the first time the kind is looked up, not when the registry is: each brings its
platform's SDK (google-auth with requests, pyairtable, slack_sdk, boto3, msal, dropbox), and a
process that never delivers to a platform (the web service, a worker that delivers to folders and hooks)
should not pay for importing it at every start."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from .base import Kind, RecordKind

_PACKAGES = {  # kind -> its package under connectors/ (writes_back: it writes to the record a document belongs to)
    "folder": ("folder", False),
    "webhook": ("webhook", False),
    "callback": ("callback", False),
    "slack": ("slack", False),
    "slack_reply": ("slack_reply", False),
    "gdrive": ("gdrive", False),
    "email": ("email", False),
    "s3": ("s3", False),
    "onedrive": ("onedrive", False),
    "dropbox": ("dropbox", False),
    "teams": ("teams", False),
    "hubspot": ("hubspot", True),
    "airtable": ("airtable", True),
    "sheets": ("sheets", True),
}


class _Kinds(Mapping):
    """Kinds by name, each imported when first looked up (names and membership need no import)."""

    def __init__(self, names: list[str]):
        self._names = names

    def __getitem__(self, name: str):
        if name not in self._names:
            raise KeyError(name)
        return importlib.import_module(f"connectors.{_PACKAGES[name][0]}").KIND

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


KINDS: Mapping[str, Kind] = _Kinds(list(_PACKAGES))

RECORD_KINDS: Mapping[str, RecordKind] = _Kinds(
    [name for name, (_, writes_back) in _PACKAGES.items() if writes_back]
)
"""The kinds that write back to the record a document belongs to; a connection of one is a saved destination."""
