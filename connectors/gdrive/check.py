"""The check of a Drive destination when it is saved: it signs in, finds the folder, and makes sure the
credentials may create files in it (a service account only in a shared drive, or as a user it
impersonates), without uploading anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import Check, Delivery, DeliveryError, Environment, Verdict
from ..google_auth import access_token
from . import place

if TYPE_CHECKING:
    from . import DriveKind


def check(kind: DriveKind, target: Delivery, env: Environment) -> list[Check]:
    from . import SCOPES

    credentials = target.config.get("credentials") or {}
    folder_id = str(target.config.get("folder_id"))
    try:
        access_token(credentials, SCOPES, env, force=True)  # a real sign-in, not a kept token
    except DeliveryError as exc:
        return [Check("signs in", Verdict.FAILURE, exc.message, _sign_in_fix(credentials))]
    checks = [Check("signs in", Verdict.PASS, f"signed in as {_who(credentials)}")]
    try:
        folder = kind.folder(target, env)
    except DeliveryError as exc:
        return [
            *checks,
            Check(
                "the folder exists",
                Verdict.FAILURE,
                exc.message,
                f"Check folder_id, and share the folder with {_who(credentials)}",
            ),
        ]
    checks.append(Check("the folder exists", Verdict.PASS, f"found the folder {folder_id}"))
    checks.append(_where(folder, target))
    checks.append(
        Check("may add files to the folder", Verdict.PASS, "the credentials may add files there")
        if folder.can_add_children
        else Check(
            "may add files to the folder",
            Verdict.FAILURE,
            f"{_who(credentials)} may only view the folder {folder_id}",
            "Make it an Editor of the folder (a Content manager of the shared drive)",
        )
    )
    return checks


def _where(folder: place.Folder, target: Delivery) -> Check:
    name = "the folder is where the credentials may own files"
    subject = (target.config.get("credentials") or {}).get("subject")
    if folder.drive_id:
        return Check(name, Verdict.PASS, f"the folder is in the shared drive {folder.drive_id}")
    if place.service_account_without_subject(target):
        return Check(
            name,
            Verdict.FAILURE,
            "the folder is in a My Drive, and a service account has no storage there: every upload "
            "would be refused (403 storageQuotaExceeded)",
            place.MY_DRIVE_FIX,
        )
    owner = f"{subject}, whom the service account impersonates" if subject else "the signed-in user"
    return Check(name, Verdict.PASS, f"the folder is in a My Drive; files are owned by {owner}")


def _who(credentials: dict) -> str:
    if credentials.get("type") == "service_account":
        email = str(credentials.get("client_email") or "the service account")
        return f"{email} as {credentials['subject']}" if credentials.get("subject") else email
    return "the OAuth client's user"


def _sign_in_fix(credentials: dict) -> str:
    if credentials.get("type") == "service_account":
        return "Use a current key of the service account (and, with subject, allow domain-wide delegation)"
    return "Sign in again for a new refresh token granting https://www.googleapis.com/auth/drive"
