"""Where a Drive destination's folder is: in a shared drive (its ``driveId``) or in someone's My Drive, and
whether the credentials may create files there. A service account has no storage quota, so outside a shared
drive it can create nothing unless it impersonates a user (``subject``, domain-wide delegation): that is
said plainly, before any upload is tried."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..base import Delivery, Permanent, digest

MY_DRIVE_FIX = (
    "Move the folder into a shared drive and add the service account to that drive as a Content manager, "
    "or set `subject` in the credentials to a user the service account may impersonate (domain-wide "
    "delegation), or use an OAuth client with a refresh token instead"
)
_LIFE = 600.0  # a folder seldom moves between drives; a moved one is seen again within minutes
# per process: (API URL, folder id, credentials digest) -> (the folder, when it was looked up)
_known: dict[tuple[str, str, str], tuple[Folder, float]] = {}


@dataclass(frozen=True)
class Folder:
    folder_id: str
    drive_id: str
    """The shared drive it is in; empty: a My Drive."""
    can_add_children: bool

    def search(self) -> dict[str, str]:
        """files.list parameters that search this folder's drive only: ``corpora=allDrives`` may come back
        incomplete (drive v3 files.list: "Prefer 'user' or 'drive' to 'allDrives' for efficiency")."""
        if self.drive_id:
            return {
                "corpora": "drive",
                "driveId": self.drive_id,
                "supportsAllDrives": "true",
                "includeItemsFromAllDrives": "true",
            }
        return {"corpora": "user", "supportsAllDrives": "true"}


def service_account_without_subject(delivery: Delivery) -> bool:
    credentials = delivery.config.get("credentials") or {}
    return credentials.get("type") == "service_account" and not credentials.get("subject")


def no_quota(folder_id: str) -> Permanent:
    return Permanent(
        f"Google Drive: the folder {folder_id} is in a My Drive, and a service account has no storage "
        f"there (Drive answers 403 storageQuotaExceeded). {MY_DRIVE_FIX}."
    )


def _key(api_url: str, delivery: Delivery) -> tuple[str, str, str]:
    credentials = delivery.config.get("credentials") or {}
    return api_url, str(delivery.config["folder_id"]), digest(repr(sorted(credentials.items())))


def remembered(api_url: str, delivery: Delivery) -> tuple[tuple[str, str, str], Folder | None]:
    """The cache key of this delivery's folder, and the folder if it was looked up lately."""
    key = _key(api_url, delivery)
    found = _known.get(key)
    return key, (found[0] if found and found[1] > time.monotonic() - _LIFE else None)


def remember(key: tuple[str, str, str], folder: Folder) -> None:
    _known[key] = (folder, time.monotonic())


def forget(api_url: str, delivery: Delivery) -> None:
    _known.pop(_key(api_url, delivery), None)
