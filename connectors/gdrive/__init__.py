"""Google Drive: a resumable upload into a folder (shared drives too), streamed in chunks that are
multiples of 256 KiB. The upload session is recorded, so after a broken connection or a killed worker
the upload asks Drive how far it got (``Content-Range: bytes */total``) and goes on from there. The
delivery id is stored in the file's ``appProperties`` and looked up before anything is created, so a
retry never makes a second file. Credentials: a service account (JWT bearer), impersonating a user when
``subject`` is set (domain-wide delegation), or an OAuth client with a refresh token, through google-auth.

A service account has no storage quota: it can upload only into a shared drive, or as the user it
impersonates. The folder is looked up first (its drive, cached a while per process), so a service account
pointed at a My Drive folder is told so, with the fix, before an upload is tried (connectors.gdrive.place);
searches stay within the folder's drive, which Drive answers completely."""

from __future__ import annotations

import contextlib

import httpx

from .. import naming
from ..base import (
    CHUNK,
    Check,
    ChunkReader,
    Delivery,
    Document,
    Environment,
    Outcome,
    Permanent,
    Retryable,
    classify_status,
)
from ..google_auth import access_token
from ..retry_after import retry_after
from . import place
from .place import Folder

SCOPES = ["https://www.googleapis.com/auth/drive"]
FOLDER = "application/vnd.google-apps.folder"
UPLOAD_CHUNK = 16 * CHUNK  # 4 MiB per request: a multiple of 256 KiB, as Drive requires
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "backendError"}


class DriveKind:
    name = "gdrive"
    needs_document = True

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        from .check import check

        return check(self, target, env)

    def folder(self, delivery: Delivery, env: Environment) -> Folder:
        """The destination's folder: its drive and whether the credentials may add to it."""
        key, known = place.remembered(str(env.settings["drive_api_url"]), delivery)
        if known is None:
            folder_id = str(delivery.config["folder_id"])
            answer = self._request(
                delivery,
                env,
                "GET",
                f"/drive/v3/files/{folder_id}",
                params={
                    "supportsAllDrives": "true",
                    "fields": "id,driveId,capabilities(canAddChildren)",
                },
            ).json()
            known = Folder(
                folder_id,
                str(answer.get("driveId") or ""),
                bool((answer.get("capabilities") or {}).get("canAddChildren", True)),
            )
            place.remember(key, known)
        return known

    def _writable_folder(self, delivery: Delivery, env: Environment) -> Folder:
        folder = self.folder(delivery, env)
        if not folder.drive_id and place.service_account_without_subject(delivery):
            # looked up again next time: a replay after the folder moved to a shared drive must see it
            place.forget(str(env.settings["drive_api_url"]), delivery)
            raise place.no_quota(folder.folder_id)
        return folder

    def _search(self, delivery: Delivery, env: Environment, query: str, fields: str) -> list[dict]:
        params = {
            "q": query,
            **self._writable_folder(delivery, env).search(),
            "fields": f"{fields},incompleteSearch",
        }
        answer = self._request(delivery, env, "GET", "/drive/v3/files", params=params).json()
        found = answer.get("files", [])
        if answer.get("incompleteSearch") and not found:
            raise Retryable("Drive's search came back incomplete; looking again later")
        return found

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        query = f"appProperties has {{ key='relayDeliveryId' and value='{delivery.delivery_id}' }} and trashed = false"
        files = self._search(delivery, env, query, "files(id,name,size)")
        return (
            Outcome(f"gdrive:{files[0]['id']} ({files[0]['name']})", files[0]["id"])
            if files
            else None
        )

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        assert document is not None
        if document.size is None:
            raise Retryable("the document's size is unknown; Drive needs it for a resumable upload")
        state = dict(delivery.state)
        offset, session = 0, state.get("session")
        if session:
            done, offset = self._progress(delivery, env, session, document.size)
            if done is not None:
                return _outcome(done)
            if offset < 0:  # the session expired: start over
                session = None
        if not session:
            session = self._start(delivery, document, env)
            offset = 0
            env.save_state(delivery.delivery_id, {**state, "session": session})
        return _outcome(self._upload(delivery, env, session, document, offset))

    # -- the protocol -------------------------------------------------------------------------------

    def _start(self, delivery: Delivery, document: Document, env: Environment) -> str:
        metadata = {
            "name": naming.file_name(delivery, document),
            "parents": [self._parent(delivery, env, document)],
            "mimeType": document.content_type,
            "appProperties": {"relayDeliveryId": delivery.delivery_id},
        }
        headers = {
            "X-Upload-Content-Type": document.content_type,
            "X-Upload-Content-Length": str(document.size),
        }
        response = self._request(
            delivery,
            env,
            "POST",
            "/upload/drive/v3/files",
            params={"uploadType": "resumable", "supportsAllDrives": "true"},
            json=metadata,
            headers=headers,
        )
        return response.headers["location"]

    def _parent(self, delivery: Delivery, env: Environment, document: Document) -> str:
        """The folder under ``folder_id`` that the ``folder`` template names, each level found or made."""
        parent = str(delivery.config["folder_id"])
        for part in filter(None, naming.folder(delivery, document).split("/")):
            quoted = part.replace("\\", "\\\\").replace("'", "\\'")
            query = f"name = '{quoted}' and '{parent}' in parents and mimeType = '{FOLDER}' and trashed = false"
            found = self._search(delivery, env, query, "files(id)")
            if found:
                parent = found[0]["id"]
                continue
            made = self._request(
                delivery,
                env,
                "POST",
                "/drive/v3/files",
                params={"supportsAllDrives": "true"},
                json={"name": part, "mimeType": FOLDER, "parents": [parent]},
            )
            parent = made.json()["id"]
        return parent

    def _progress(
        self, delivery: Delivery, env: Environment, session: str, total: int
    ) -> tuple[dict | None, int]:
        """Ask Drive how much of the session it has: (the file, if complete; next offset, or -1 if gone)."""
        response = self._put(delivery, env, session, b"", f"bytes */{total}")
        if response.status_code in (200, 201):
            return response.json(), total
        if response.status_code == 308:
            return None, _committed(response)
        if response.status_code in (404, 410):
            return None, -1
        raise _classify(response, delivery)

    def _upload(
        self, delivery: Delivery, env: Environment, session: str, document: Document, offset: int
    ) -> dict:
        total, breaks = document.size or 0, 0
        while True:
            try:
                with document.open(offset) as chunks:
                    reader = ChunkReader(chunks, "Drive")
                    for start in range(offset, total, UPLOAD_CHUNK):
                        end = min(start + UPLOAD_CHUNK, total) - 1
                        response = self._put(
                            delivery,
                            env,
                            session,
                            reader.take(end + 1 - start),
                            f"bytes {start}-{end}/{total}",
                            length=end + 1 - start,
                        )
                        if response.status_code in (200, 201):
                            return response.json()
                        if response.status_code != 308:
                            raise _classify(response, delivery)
                        committed = _committed(response)
                        if committed != end + 1:  # Drive kept less than we sent: resend from there
                            offset = committed
                            raise _Resync
                raise Retryable("Drive did not confirm the last chunk")
            except (httpx.TransportError, _Resync):
                breaks += 1
                if breaks > 5:
                    raise Retryable("the upload to Drive kept breaking off") from None
                done, offset = self._progress(delivery, env, session, total)
                if done is not None:
                    return done
                if offset < 0:
                    raise Retryable("the Drive upload session expired") from None

    def _put(
        self,
        delivery: Delivery,
        env: Environment,
        session: str,
        body,
        content_range: str,
        length: int = 0,
    ):
        headers = {
            "Authorization": f"Bearer {_access_token(delivery, env)}",
            "Content-Range": content_range,
            "Content-Length": str(length),
        }
        with env.http(timeout=300) as client:
            return client.put(session, content=body, headers=headers)

    def _request(
        self,
        delivery: Delivery,
        env: Environment,
        method: str,
        path: str,
        headers: dict | None = None,
        **kwargs,
    ) -> httpx.Response:
        url = str(env.settings["drive_api_url"]).rstrip("/") + path
        for refresh in (False, True):  # a 401 gets one fresh token
            auth = {"Authorization": f"Bearer {_access_token(delivery, env, refresh)}"}
            try:
                with env.http(timeout=60) as client:
                    response = client.request(
                        method, url, headers={**(headers or {}), **auth}, **kwargs
                    )
            except httpx.TransportError as exc:
                raise Retryable(f"Drive could not be reached: {type(exc).__name__}") from None
            if response.status_code != 401:
                break
        if response.status_code >= 400:
            raise _classify(response, delivery)
        return response


class _Resync(Exception):
    pass


def _committed(response: httpx.Response) -> int:
    """The next offset from a 308's Range header (``bytes=0-N``); no header means nothing yet."""
    value = response.headers.get("range", "")
    return int(value.rsplit("-", 1)[1]) + 1 if value else 0


def _outcome(file: dict) -> Outcome:
    return Outcome(f"gdrive:{file['id']} ({file.get('name')})", file["id"])


def _classify(response: httpx.Response, delivery: Delivery) -> Exception:
    reasons: set = set()
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        reasons = {e.get("reason") for e in response.json().get("error", {}).get("errors", [])}
    folder_id = str(delivery.config.get("folder_id"))
    if "storageQuotaExceeded" in reasons:
        if place.service_account_without_subject(delivery):
            return place.no_quota(folder_id)
        return Permanent(
            "Google Drive: the storage of the account that owns the upload is full (403 "
            "storageQuotaExceeded); free space or add storage, then replay"
        )
    if "insufficientFilePermissions" in reasons:
        return Permanent(
            f"Google Drive: the credentials may only view the folder {folder_id} (403 "
            "insufficientFilePermissions); make them an Editor of it (a Content manager in a shared drive)"
        )
    if "insufficientPermissions" in reasons:
        return Permanent(
            "Google Drive: the credentials' token lacks the drive scope (403 insufficientPermissions); "
            "sign in again granting https://www.googleapis.com/auth/drive"
        )
    if response.status_code == 403 and reasons & _RATE_REASONS:
        return Retryable(
            f"Drive is throttling ({', '.join(sorted(reasons & _RATE_REASONS))})",
            retry_after(response.headers.get("retry-after")),
        )
    if response.status_code == 404:
        return Permanent("Drive: the folder does not exist or the credentials cannot see it")
    return classify_status(
        response.status_code, response.headers.get("retry-after"), "Google Drive"
    )


def _access_token(delivery: Delivery, env: Environment, force: bool = False) -> str:
    return access_token(delivery.config["credentials"], SCOPES, env, force)


KIND = DriveKind()
