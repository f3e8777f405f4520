"""OneDrive and SharePoint writes through Microsoft Graph (connectors.onedrive says what and why). Graph's
calls go through the relay's outbound client (httpx); msal only signs in."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import threading
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import msal
import requests

from .. import naming
from ..base import (
    Check,
    ChunkReader,
    Delivery,
    DeliveryError,
    Document,
    Environment,
    Outcome,
    Permanent,
    Retryable,
    Throttled,
    Verdict,
)
from ..retry_after import retry_after

FRAGMENT = 320 * 1024
DEFAULT_CHUNK_KIB = 32 * 320  # 10 MiB
BUSY_SECONDS = 30.0
"""Wait before asking again for a session for a file whose other session is open (RELAY_GRAPH_UPLOAD_BUSY_SECONDS)."""
_apps: dict[str, msal.ConfidentialClientApplication] = {}
_apps_lock = threading.Lock()
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_REFUSED_SIGN_IN = {
    "invalid_client",
    "unauthorized_client",
    "invalid_request",
    "invalid_grant",
    "invalid_scope",
}


def check(target: Delivery, env: Environment) -> list[Check]:
    """Sign in, find the drive and the folder, and prove the app may write there with an upload session for a
    name of the relay's own that is cancelled at once: no byte is uploaded, no file made."""
    config, checks = target.config, []
    try:
        _token(config, env)
    except DeliveryError as exc:
        return [
            Check(
                "signs in to Microsoft Entra",
                Verdict.FAILURE,
                exc.message,
                "Check the tenant id, the app's client id and its client secret (the secret's Value, "
                "not its ID), and that the secret has not expired.",
            )
        ]
    checks.append(Check("signs in to Microsoft Entra", Verdict.PASS, "The app signed in."))
    graph = _Graph(target, env)
    try:
        drive = graph.drive_id()
    except DeliveryError as exc:
        checks.append(
            Check(
                "finds the drive",
                Verdict.FAILURE,
                exc.message,
                "Check the user, site, library or drive id; an app with Sites.Selected needs a grant "
                "on the site.",
            )
        )
        return checks
    checks.append(Check("finds the drive", Verdict.PASS, f"The drive {drive} was found."))
    folder, made_later = _static_folder(config)
    try:
        found = (
            graph.request("GET", f"/drives/{drive}/root:/{_path(folder)}", absent=True)
            if folder
            else None
        )
    except DeliveryError as exc:
        checks.append(Check("finds the folder", Verdict.FAILURE, exc.message))
        return checks
    if folder and found is None:
        checks.append(
            Check(
                "finds the folder",
                Verdict.WARNING,
                f"The folder {folder} does not exist yet: the first delivery makes it.",
                "Nothing to do, unless the name has a typo.",
            )
        )
        folder = ""  # the probe goes to the drive's root
    elif folder and "folder" not in found.json():
        checks.append(
            Check(
                "finds the folder",
                Verdict.FAILURE,
                f"{folder} is a file in the drive, not a folder.",
                "Choose another folder name.",
            )
        )
        return checks
    elif folder:
        more = " (its subfolders from the template are made as needed)" if made_later else ""
        checks.append(Check("finds the folder", Verdict.PASS, f"The folder {folder} exists{more}."))
    checks.append(_may_write(graph, drive, folder))
    return checks


def _static_folder(config: dict) -> tuple[str, bool]:
    """The folder template's leading part without a field (``Deals`` of ``Deals/{record_key}``), and whether
    parts with fields follow."""
    parts = [p for p in str(config.get("folder") or "").split("/") if p.strip()]
    fixed = []
    for part in parts:
        if "{" in part:
            return "/".join(fixed), True
        fixed.append(part.strip())
    return "/".join(fixed), False


def _may_write(graph: _Graph, drive: str, folder: str) -> Check:
    name = f".relay-check-{secrets.token_hex(6)}.tmp"
    where = f"{folder}/{name}" if folder else name
    body = {"item": {"@microsoft.graph.conflictBehavior": "fail", "name": name}}
    what = "may write files there"
    try:
        answer = graph.request(
            "POST", f"/drives/{drive}/root:/{_path(where)}:/createUploadSession", json=body
        )
        # cancelled at once: nothing uploaded, nothing kept
        graph._session_call("DELETE", str(answer.json()["uploadUrl"]))
    except Permanent as exc:
        full = "drive is full" in exc.message
        return Check(
            what,
            Verdict.FAILURE,
            exc.message,
            "Free space in the drive, or raise its storage quota."
            if full
            else "Grant the app the application permission Sites.ReadWrite.All (admin consent), "
            "or, with Sites.Selected, write access to this site.",
        )
    except DeliveryError as exc:
        return Check(what, Verdict.FAILURE, exc.message, "Try the check again later.")
    return Check(
        what, Verdict.PASS, "The app may upload into the folder (checked, nothing uploaded)."
    )


def find_existing(delivery: Delivery, env: Environment) -> Outcome | None:
    state = delivery.state
    if not state.get("session"):
        return None  # no attempt began an upload: nothing of ours can be there
    graph = _Graph(delivery, env)
    stem, dot, ext = (
        state["name"].rpartition(".") if "." in state["name"] else (state["name"], "", "")
    )
    # OneDrive's names are case-insensitive: Report.xlsx is report.xlsx
    named = re.compile(rf"{re.escape(stem)}( \d+)?{re.escape(dot + ext)}", re.IGNORECASE)
    began = datetime.fromisoformat(state["began"])
    for item in graph.children(state["drive_id"], state["folder"]):
        if (
            "file" in item
            and named.fullmatch(item["name"])
            and item.get("size") == state["size"]
            and _when(item["lastModifiedDateTime"]) >= began
        ):
            return _outcome(state, item)
    return None


def deliver(delivery: Delivery, document: Document, env: Environment) -> Outcome:
    if not document.size:
        raise Retryable("the document's size is unknown; Graph's upload session needs it")
    graph, state = _Graph(delivery, env), dict(delivery.state)
    chunk = int(delivery.config.get("chunk_kib") or DEFAULT_CHUNK_KIB) * 1024
    offset = graph.session_offset(state["session"]) if state.get("session") else None
    for _ in range(2):  # a session Graph forgot while uploading starts over, once per attempt
        if offset is None:
            state = _begin(graph, delivery, document, env)
            offset = 0
        item = graph.upload(state["session"], document, offset, chunk)
        if item is not None:
            return _outcome(state, item)
        offset = None
    raise Retryable("Graph's upload session expired twice in one attempt")


def _begin(graph: _Graph, delivery: Delivery, document: Document, env: Environment) -> dict:
    drive = delivery.state.get("drive_id") or graph.drive_id()
    folder = naming.folder(delivery, document, rules=naming.SHAREPOINT)
    name = naming.file_name(delivery, document, naming.SHAREPOINT)
    graph.ensure_folder(drive, folder)
    session, began = graph.create_session(
        drive, folder, name, delivery.config.get("conflict", "replace"), document.size
    )
    state = {
        "drive_id": drive,
        "folder": folder,
        "name": name,
        "size": document.size,
        "session": session,
        "began": began.isoformat(),
    }
    env.save_state(delivery.delivery_id, state)
    return state


def _outcome(state: dict, item: dict) -> Outcome:
    path = "/".join(filter(None, [state["folder"], item["name"]]))
    return Outcome(
        f"onedrive:{state['drive_id']}/{path} {item.get('webUrl', '')}".rstrip(), item["id"]
    )


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class _Resync(Exception):
    pass


class _Graph:
    def __init__(self, delivery: Delivery, env: Environment):
        self.config, self.env = delivery.config, env
        self.base = str(env.settings["graph_api_url"]).rstrip("/")

    # -- the drive and its folder --------------------------------------------------------------------

    def drive_id(self) -> str:
        config = self.config
        if config.get("drive_id"):
            return str(config["drive_id"])
        if config.get("user"):
            return self.get(
                f"/users/{quote(config['user'], safe='@')}/drive", "the user's OneDrive"
            )["id"]
        site = self.get(f"/sites/{quote(config['site'], safe=':/,')}", "the SharePoint site")["id"]
        library = str(config.get("library") or "")
        if not library:
            return self.get(f"/sites/{site}/drive", "the site's default library")["id"]
        drives = self.get(f"/sites/{site}/drives", "the site's libraries").get("value", [])
        for drive in drives:
            if str(drive.get("name", "")).casefold() == library.casefold():
                return str(drive["id"])
        raise Permanent(
            f"the SharePoint site has no library named {library!r} "
            f"(it has: {', '.join(d.get('name', '?') for d in drives) or 'none'})"
        )

    def ensure_folder(self, drive: str, folder: str) -> None:
        if not folder:
            return
        found = self.request("GET", f"/drives/{drive}/root:/{_path(folder)}", absent=True)
        if found is not None:
            if "folder" not in found.json():
                raise Permanent(f"{folder} is a file in the drive, not a folder")
            return
        parent = ""
        for part in folder.split("/"):
            where = (
                f"/drives/{drive}/root:/{_path(parent)}:/children"
                if parent
                else f"/drives/{drive}/root/children"
            )
            body = {"name": part, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}
            # 409: made already, by us or another
            self.request("POST", where, json=body, conflict_ok=True)
            parent = f"{parent}/{part}" if parent else part

    def children(self, drive: str, folder: str) -> list[dict]:
        where = (
            f"/drives/{drive}/root:/{_path(folder)}:/children"
            if folder
            else f"/drives/{drive}/root/children"
        )
        items, url = (
            [],
            where + "?$select=id,name,size,file,folder,webUrl,lastModifiedDateTime&$top=200",
        )
        while url:
            answer = self.request("GET", url, absent=True)
            if answer is None:
                return items
            page = answer.json()
            items += page.get("value", [])
            url = page.get("@odata.nextLink", "")
        return items

    # -- the upload session ----------------------------------------------------------------------------

    def create_session(
        self, drive: str, folder: str, name: str, conflict: str, size: int | None = None
    ) -> tuple[str, datetime]:
        """The upload URL, and when the session began by Graph's clock (less a second: Date has whole ones).
        With the file's size, a drive too full for it answers 507 before a byte is sent."""
        where = f"{folder}/{name}" if folder else name
        item: dict = {"@microsoft.graph.conflictBehavior": conflict, "name": name}
        if size:
            item["fileSize"] = size
        body = {"item": item}
        answer = self.request(
            "POST",
            f"/drives/{drive}/root:/{_path(where)}:/createUploadSession",
            json=body,
            conflict_ok=True,
        )
        if answer.status_code == 409:
            raise self._conflict(answer, drive, where, conflict)
        try:
            began = parsedate_to_datetime(answer.headers["date"]).astimezone(UTC)
        except (KeyError, TypeError, ValueError):
            began = datetime.now(UTC) - timedelta(minutes=5)
        return str(answer.json()["uploadUrl"]), began - timedelta(seconds=1)

    def _conflict(
        self, answer: httpx.Response, drive: str, where: str, conflict: str
    ) -> DeliveryError:
        """A 409 to createUploadSession. In OneDrive for Business an upload session is tied to its path: while
        another is open for the file (another delivery's to the same name, or one whose answer was lost),
        Graph answers nameAlreadyExists whatever the conflict behavior (OneDrive/onedrive-api-docs#747), and
        gives no way to find that session. It ends when its upload completes, or within 15 minutes idle: wait."""
        if _code(answer) != "nameAlreadyExists":
            return _classify(answer)
        item = f"/drives/{drive}/root:/{_path(where)}"
        if conflict == "fail" and self.request("GET", item, absent=True) is not None:
            return Permanent(
                f"Microsoft Graph answered 409 nameAlreadyExists: {where} exists and the conflict "
                "policy is fail"
            )
        wait = retry_after(answer.headers.get("retry-after")) or float(
            self.env.settings.get("graph_upload_busy_seconds") or BUSY_SECONDS
        )
        return Throttled(
            f"another upload to {where} is under way in OneDrive (another delivery of the same "
            "file, or an earlier attempt's session; Graph closes an idle one within 15 minutes): "
            "waiting for it to end",
            retry_after=wait,
        )

    def session_offset(self, session: str) -> int | None:
        """Where the session stands (the first of nextExpectedRanges); None when Graph no longer knows it."""
        answer = self._session_call("GET", session)
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise _classify(answer)
        return _next_expected(answer.json())

    def upload(self, session: str, document: Document, offset: int, chunk: int) -> dict | None:
        """The driveItem once the last fragment is in; None when the session is gone (start over)."""
        total, breaks = document.size or 0, 0
        while True:
            try:
                with document.open(offset) as chunks:
                    reader = ChunkReader(chunks, "OneDrive")
                    while True:
                        end = min(offset + chunk, total) - 1
                        answer = self._session_call(
                            "PUT",
                            session,
                            content=reader.take(end + 1 - offset),
                            headers={
                                "Content-Length": str(end + 1 - offset),
                                "Content-Range": f"bytes {offset}-{end}/{total}",
                            },
                        )
                        if answer.status_code in (200, 201):
                            return answer.json()
                        if answer.status_code == 404:
                            return None
                        if answer.status_code == 416:
                            raise _Resync
                        if answer.status_code != 202:
                            raise _classify(answer)
                        expected = _next_expected(answer.json())
                        if expected != end + 1:
                            raise _Resync
                        offset = expected
            except (httpx.TransportError, _Resync):
                breaks += 1
                if breaks > 5:
                    raise Retryable("the upload to OneDrive kept breaking off") from None
                where = self.session_offset(session)
                if where is None:
                    return None
                offset = where

    def _session_call(self, method: str, session: str, **kwargs) -> httpx.Response:
        """A call to the upload URL: no Authorization header, which Graph refuses there."""
        try:
            with self.env.http(timeout=300) as client:
                return client.request(method, session, **kwargs)
        except httpx.TransportError:
            if method == "PUT":
                raise
            raise Retryable("OneDrive's upload URL could not be reached") from None

    # -- calls to Graph ----------------------------------------------------------------------------------

    def get(self, path: str, what: str) -> dict:
        answer = self.request("GET", path, absent=True)
        if answer is None:
            raise Permanent(f"Microsoft Graph: {what} was not found, or the app may not see it")
        return answer.json()

    def request(
        self, method: str, path: str, absent: bool = False, conflict_ok: bool = False, **kwargs
    ) -> Any:
        url = (
            path if path.startswith("https://") or path.startswith("http://") else self.base + path
        )
        for fresh in (False, True):  # a 401 gets one new token
            headers = {"Authorization": f"Bearer {_token(self.config, self.env, fresh)}"}
            try:
                with self.env.http(timeout=60) as client:
                    answer = client.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                raise Retryable(
                    f"Microsoft Graph could not be reached: {type(exc).__name__}"
                ) from None
            if answer.status_code != 401:
                break
        if answer.status_code == 404 and absent:
            return None
        if answer.status_code == 409 and conflict_ok:
            return answer
        if answer.status_code >= 400:
            raise _classify(answer)
        return answer


def _path(path: str) -> str:
    return quote(path, safe="/")


def _next_expected(status: dict) -> int:
    ranges = status.get("nextExpectedRanges") or ["0-"]
    return int(str(ranges[0]).split("-", 1)[0])


def _code(answer: httpx.Response) -> str:
    """Graph's error code (never its message, which may name things), when it looks like one."""
    error: dict = {}
    with contextlib.suppress(ValueError, AttributeError):
        error = answer.json().get("error") or {}
    code = str(error.get("code") or "")
    return code if _CODE.fullmatch(code) else ""


def _classify(answer: httpx.Response) -> DeliveryError:
    code, status = _code(answer), answer.status_code
    said = f"Microsoft Graph answered {status} {code}".strip()
    if status in (429, 503, 509) or code in ("activityLimitReached", "serviceNotAvailable"):
        return Retryable(said, retry_after=retry_after(answer.headers.get("retry-after")))
    if code == "nameAlreadyExists":  # at the last fragment: someone made the file meanwhile
        return Permanent(f"{said} (the file exists and the conflict policy is fail)")
    if status == 507 or code == "quotaLimitReached":
        return Permanent(
            f"{said}: the drive is full; free space in it or raise its storage quota, then replay"
        )
    if status == 423:
        return Retryable(f"{said}: the file is locked (checked out, or open for editing)")
    if status in (401, 403):
        return Permanent(
            f"Microsoft Graph refused the app ({code or status}): grant it the application "
            "permission Sites.ReadWrite.All (or Sites.Selected with write access to this site)"
        )
    if status >= 500 or status in (408, 409):
        return Retryable(said)
    return Permanent(said)


# -- sign-in ---------------------------------------------------------------------------------------------


def _token(config: dict, env: Environment, fresh: bool = False) -> str:
    app = _app(config, env)
    if fresh:
        app.remove_tokens_for_client()
    resource = "{0.scheme}://{0.netloc}".format(urlsplit(str(env.settings["graph_api_url"])))
    try:
        result = app.acquire_token_for_client(scopes=[f"{resource}/.default"])
    except requests.RequestException as exc:
        raise Retryable(f"Microsoft Entra could not be reached: {type(exc).__name__}") from None
    if "access_token" in result:
        return str(result["access_token"])
    error = str(result.get("error") or "")
    error = error if _CODE.fullmatch(error) else "no error code"  # never its description
    if error in _REFUSED_SIGN_IN:
        raise Permanent(f"Microsoft Entra refused the app's credentials ({error})")
    raise Retryable(f"Microsoft Entra did not sign the app in ({error})")


def _app(config: dict, env: Environment) -> msal.ConfidentialClientApplication:
    """One app per credentials and process: msal keeps its tokens (an hour's) in the app's cache."""
    authority = f"{str(env.settings['graph_login_url']).rstrip('/')}/{config['tenant_id']}"
    key = hashlib.sha256(
        "\0".join([authority, config["client_id"], config["client_secret"]]).encode()
    ).hexdigest()
    with _apps_lock:
        if key not in _apps:
            try:
                _apps[key] = msal.ConfidentialClientApplication(
                    config["client_id"],
                    client_credential=config["client_secret"],
                    authority=authority,
                    instance_discovery=False,
                    # the outbound policy's: no redirect, each connection to a checked address
                    http_client=env.settings["session"](timeout=30),
                )
            except requests.RequestException as exc:
                raise Retryable(
                    f"Microsoft Entra could not be reached: {type(exc).__name__}"
                ) from None
            except ValueError:  # msal could not read the tenant's OpenID configuration
                raise Permanent(
                    f"Microsoft Entra does not know the tenant {config['tenant_id']!r}"
                ) from None
        return _apps[key]
