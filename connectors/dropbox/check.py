"""A Dropbox destination checked when it is saved, without delivering a document: the app signs in with its
refresh token; it writes into the folder (a small test file, committed and deleted: the scope
files.content.write, the team space, the write permission, a Business team's data-transport calls); it reads
the folder (files.metadata.read, which finds a finished upload again after a crash or contention)."""

from __future__ import annotations

import secrets
from typing import Any

from ..base import Check, Delivery, DeliveryError, Environment, Verdict
from .client import call, new_client, safe, tags_of
from .sdk import exceptions, files

SIGN_IN = "signs in"
WRITES = "writes into the folder"
READS = "reads the folder (files.metadata.read)"
CLEANS = "removes its test file"


def check(target: Delivery, env: Environment) -> list[Check]:
    config = target.config
    dbx = new_client(config, env)  # its own: signs in afresh
    try:
        call(dbx.refresh_access_token)
    except DeliveryError as exc:
        return [
            Check(
                SIGN_IN,
                Verdict.FAILURE,
                exc.message,
                "Connect Dropbox again for a new refresh token, with this app's key and secret.",
            )
        ]
    checks = [Check(SIGN_IN, Verdict.PASS, "The refresh token signs in.")]
    folder = _fixed_folder(str(config.get("folder") or ""))
    marker = f"/{folder}/.relay-check-{secrets.token_hex(4)}" if folder else None
    marker = marker or f"/.relay-check-{secrets.token_hex(4)}"
    written = _write(dbx, marker)
    checks.append(written)
    if written.verdict is Verdict.FAILURE:
        return checks
    checks.append(_read(dbx, folder))
    checks.append(_remove(dbx, marker))
    return checks


def _write(dbx: Any, marker: str) -> Check:
    commit = files.CommitInfo(path=marker, mode=files.WriteMode.add, autorename=False, mute=True)
    try:
        session = call(lambda: dbx.files_upload_session_start(b"")).session_id
        cursor = files.UploadSessionCursor(session, 0)
        call(lambda: dbx.files_upload_session_finish(b"", cursor, commit))
    except exceptions.ApiError as exc:
        tags, _ = tags_of(exc.error)
        said = "/".join(safe(tag) for tag in tags) or "no error code"
        return Check(
            WRITES,
            Verdict.FAILURE,
            f"Dropbox refused a test file in the folder ({said}).",
            "Choose a folder the account may write into (no_write_permission: a read-only shared "
            "or team folder; insufficient_space: free space in the account).",
        )
    except DeliveryError as exc:
        return Check(WRITES, Verdict.FAILURE, exc.message, _fix(exc.message))
    return Check(
        WRITES,
        Verdict.PASS,
        "A test file was written into the folder (files.content.write).",
    )


def _read(dbx: Any, folder: str) -> Check:
    try:
        call(lambda: dbx.files_list_folder(f"/{folder}" if folder else ""))
    except exceptions.ApiError:
        pass  # the folder itself may not exist yet: the scope was good enough to be asked
    except DeliveryError as exc:
        return Check(
            READS,
            Verdict.FAILURE,
            f"{exc.message}. Without it, a file whose upload was cut short or refused for "
            "contention cannot be found again, and the retry dies.",
            _fix(exc.message),
        )
    return Check(READS, Verdict.PASS, "The folder can be listed (files.metadata.read).")


def _remove(dbx: Any, marker: str) -> Check:
    try:
        call(lambda: dbx.files_delete_v2(marker))
    except (DeliveryError, exceptions.ApiError):
        return Check(
            CLEANS,
            Verdict.WARNING,
            f"The test file {marker} could not be deleted.",
            "Delete it by hand; deliveries are not affected.",
        )
    return Check(CLEANS, Verdict.PASS, "The test file was deleted.")


def _fix(message: str) -> str:
    if "lacks the scope" in message:
        return (
            "In the app's Permissions tab (dropbox.com/developers/apps), tick files.content.write and "
            "files.metadata.read, then connect again: a refresh token keeps the scopes it was given."
        )
    if "team space" in message:
        return "Set root_namespace_id to the team's root namespace id, or leave it empty."
    if "data transport" in message:
        return "Wait for the 1st of the month, or move the team to a plan without the limit."
    return "Check the destination's settings and the app's access, then check again."


def _fixed_folder(template: str) -> str:
    """The part of a folder template before its first field, whole levels only ("Deals/{record_key}"
    gives "Deals"): the folder every delivery writes under."""
    fixed = template.split("{", 1)[0]
    if "{" in template:
        fixed = fixed.rpartition("/")[0]
    return "/".join(part for part in fixed.split("/") if part.strip(" ."))
