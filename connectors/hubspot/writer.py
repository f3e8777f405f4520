"""HubSpot writes through hubspot-api-client (connectors.hubspot says what and why)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from typing import Any, TypeVar

import urllib3
from hubspot import HubSpot
from hubspot.crm.associations.v4 import exceptions as association_errors
from hubspot.crm.objects import SimplePublicObjectInput
from hubspot.crm.objects import exceptions as object_errors
from hubspot.crm.objects.notes import (
    AssociationSpec,
    BatchReadInputSimplePublicObjectId,
    PublicAssociationsForObject,
    PublicObjectId,
    SimplePublicObjectId,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.notes import exceptions as note_errors
from hubspot.files import exceptions as file_errors
from hubspot.oauth import exceptions as oauth_errors

from ..base import Delivery, Document, Environment, Outcome, Permanent, Retryable
from ..records import mapped, marker, write_back_of
from ..retry_after import retry_after

NOTE_TO = {"contacts": 202, "companies": 190, "deals": 214, "tickets": 228}
"""HubSpot-defined association types from a note to each standard object (a custom object uses its default)."""
_MARKER = re.compile(r"relay-task:(tsk_[0-9A-Z]{26})")
_API_ERRORS = (
    object_errors.ApiException,
    note_errors.ApiException,
    association_errors.ApiException,
    file_errors.ApiException,
    oauth_errors.ApiException,
)
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# per process: OAuth client digest -> (access token, expiry)
_tokens: dict[str, tuple[str, float]] = {}
T = TypeVar("T")


def write(
    delivery: Delivery,
    document: Document | None,
    env: Environment,
    parse_record: Callable[[str], dict[str, str]],
) -> Outcome:
    write_back = write_back_of(delivery, document)
    record = parse_record(write_back.record_key)
    hubspot = _Session(delivery, env)
    properties = mapped(write_back, delivery.config.get("fields") or {})
    if properties:
        hubspot.call(
            lambda api: api.crm.objects.basic_api.update(
                record["object_type"],
                record["id"],
                SimplePublicObjectInput(properties=_texts(properties)),
            )
        )
    location = f"hubspot:{record['object_type']}/{record['id']}"
    if not (write_back.completed and document is not None and delivery.config.get("attach", True)):
        return Outcome(f"{location} ({write_back.values['status']})")
    notes = _relay_notes(hubspot, record)
    note_id = next(
        (note_id for note_id, (task_id, _) in notes.items() if task_id == write_back.task_id), None
    )
    if note_id is None:
        note_id = _attach(hubspot, delivery, document, env, record, write_back.task_id)
    if delivery.config.get("versions", "replace") == "replace":
        for earlier, (task_id, files) in notes.items():
            if task_id != write_back.task_id:
                _archive(hubspot, earlier, files)
    return Outcome(f"{location} note {note_id}", note_id)


# -- the file and its note ------------------------------------------------------------------------


def _relay_notes(hubspot: _Session, record: dict) -> dict[str, tuple[str, list[str]]]:
    """The relay's notes on the record: note id -> (task id, attached file ids)."""
    ids, after = [], None
    while True:
        page = hubspot.call(
            lambda api, after=after: api.crm.associations.v4.basic_api.get_page(
                record["object_type"], record["id"], "notes", limit=500, after=after
            )
        )
        ids += [str(result.to_object_id) for result in page.results or []]
        after = page.paging.next.after if page.paging and page.paging.next else None
        if after is None:
            break
    notes: dict[str, tuple[str, list[str]]] = {}
    for start in range(0, len(ids), 100):
        batch = BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=i) for i in ids[start : start + 100]],
            properties=["hs_note_body", "hs_attachment_ids"],
            properties_with_history=[],
        )
        for note in hubspot.call(
            lambda api, batch=batch: api.crm.objects.notes.batch_api.read(batch)
        ).results:
            found = _MARKER.search(note.properties.get("hs_note_body") or "")
            if found:
                files = [
                    f for f in (note.properties.get("hs_attachment_ids") or "").split(";") if f
                ]
                notes[str(note.id)] = (found[1], files)
    return notes


def _attach(
    hubspot: _Session,
    delivery: Delivery,
    document: Document,
    env: Environment,
    record: dict,
    task_id: str,
) -> str:
    state = dict(delivery.state)
    if not state.get("file_id"):
        state["file_id"] = _upload(hubspot, delivery, document)
        # a repeated attempt attaches this file, not a second one
        env.save_state(delivery.delivery_id, state)
    if not state.get("note_id"):
        body = (
            f"<p><strong>{escape(document.name)}</strong> is ready.</p>"
            f'<p><a href="{escape(document.link)}">Download the latest copy</a></p><p>{marker(task_id)}</p>'
        )
        standard = NOTE_TO.get(record["object_type"])
        associations = (
            [
                PublicAssociationsForObject(
                    to=PublicObjectId(id=record["id"]),
                    types=[
                        AssociationSpec(
                            association_category="HUBSPOT_DEFINED", association_type_id=standard
                        )
                    ],
                )
            ]
            if standard
            else []
        )
        note = hubspot.call(
            lambda api: api.crm.objects.notes.basic_api.create(
                SimplePublicObjectInputForCreate(
                    properties={
                        "hs_note_body": body,
                        "hs_attachment_ids": state["file_id"],
                        "hs_timestamp": datetime.now(UTC).isoformat(),
                    },
                    associations=associations,
                )
            )
        )
        state["note_id"] = str(note.id)
        env.save_state(delivery.delivery_id, state)
        if standard:
            return state["note_id"]
    # a custom object: the note made above (or by an attempt that stopped here) gets the default association
    hubspot.call(
        lambda api: api.crm.associations.v4.basic_api.create_default(
            "notes", state["note_id"], record["object_type"], record["id"]
        )
    )
    return state["note_id"]


def _upload(hubspot: _Session, delivery: Delivery, document: Document) -> str:
    """The document into the Files API (the client reads the file it is given whole, so it is spooled to a
    temporary file first, never held in memory as it streams from the API)."""
    limit = int(delivery.config.get("max_upload_mb", 300)) * 1024 * 1024
    if document.size is not None and document.size > limit:
        raise Permanent(
            f"the document is {document.size // 2**20} MiB, over this connection's max_upload_mb"
        )
    folder = tempfile.mkdtemp(prefix="relay-hubspot-")
    try:
        path = os.path.join(folder, document.name)
        with document.open(0) as chunks, open(path, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        options = json.dumps(
            {"access": delivery.config.get("file_access", "PRIVATE"), "overwrite": False}
        )
        uploaded = hubspot.call(
            lambda api: api.files.files_api.upload(
                file=path,
                folder_path=delivery.config.get("folder_path", "/Overten Relay"),
                file_name=document.name,
                options=options,
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return str(uploaded.id)


def _archive(hubspot: _Session, note_id: str, files: list[str]) -> None:
    """An earlier version under the replace policy: its note and the files on it (already gone is fine)."""
    with contextlib.suppress(Permanent):
        hubspot.call(lambda api: api.crm.objects.notes.basic_api.archive(note_id))
    for file_id in files:
        with contextlib.suppress(Permanent):
            hubspot.call(lambda api, file_id=file_id: api.files.files_api.archive(file_id))


# -- calls, tokens and errors ---------------------------------------------------------------------


class _Session:
    """A HubSpot client for one attempt: a private app's token, or an OAuth access token refreshed when HubSpot
    refuses it once."""

    def __init__(self, delivery: Delivery, env: Environment):
        self._config, self._host = delivery.config, str(env.settings["hubspot_api_url"]).rstrip("/")
        self._env = env
        self._api = self._client(refresh=False)

    def call(self, request: Callable[[HubSpot], T]) -> T:
        for refresh in (False, True):
            try:
                return request(self._api)
            except _API_ERRORS as exc:
                if exc.status == 401 and not refresh and self._config.get("oauth"):
                    self._api = self._client(refresh=True)
                    continue
                raise _classify(exc) from None
            except urllib3.exceptions.HTTPError as exc:
                raise Retryable(f"HubSpot could not be reached: {type(exc).__name__}") from None
        raise AssertionError("unreachable")

    def _client(self, refresh: bool) -> HubSpot:
        token = self._config.get("token") or self._oauth_token(refresh)
        return HubSpot(access_token=token, host=self._host, api_factory=self._factory)

    def _factory(self, package: Any, api_name: str, config: dict) -> Any:
        """Each of the client's APIs on a urllib3 pool manager that follows no redirect and connects only to
        addresses the outbound policy checked (the client's ``api_factory`` hook)."""
        configuration = package.Configuration()
        for key, value in config.items():
            setattr(configuration, "retries" if key == "retry" else key, value)
        configuration.retries = urllib3.Retry(3, redirect=False)
        client = package.ApiClient(configuration=configuration)
        client.user_agent = "overten-relay/0.1"
        self._env.settings["pin_pools"](client.rest_client.pool_manager)
        return getattr(package, api_name)(api_client=client)

    def _oauth_token(self, refresh: bool) -> str:
        oauth = self._config["oauth"]
        key = hashlib.sha256(json.dumps(oauth, sort_keys=True).encode()).hexdigest()
        cached = _tokens.get(key)
        if cached and not refresh and cached[1] > time.time() + 60:
            return cached[0]
        try:
            answer = HubSpot(host=self._host, api_factory=self._factory).oauth.tokens_api.create(
                grant_type="refresh_token",
                client_id=oauth["client_id"],
                client_secret=oauth["client_secret"],
                refresh_token=oauth["refresh_token"],
            )
        except oauth_errors.ApiException as exc:
            if exc.status in (400, 401, 403):
                raise Permanent(
                    f"HubSpot refused the OAuth refresh token ({_message(exc)})"
                ) from None
            raise _classify(exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise Retryable(
                f"HubSpot's token endpoint could not be reached: {type(exc).__name__}"
            ) from None
        _tokens[key] = (answer.access_token, time.time() + int(answer.expires_in or 1800))
        return str(answer.access_token)


def _classify(exc: Any) -> Exception:
    status, headers, message = (
        exc.status,
        {k.lower(): v for k, v in (exc.headers or {}).items()},
        _message(exc),
    )
    if status == 429:
        policy = str(_body(exc).get("policyName") or "")
        policy = policy if _CODE.fullmatch(policy) else ""
        wait = retry_after(headers.get("retry-after"))
        if wait is None:
            interval = _number(headers.get("x-hubspot-ratelimit-interval-milliseconds"))
            wait = 3600.0 if policy == "DAILY" else (interval or 10_000) / 1000
        return Retryable(
            f"HubSpot is throttling ({policy or 'rate limit'}): {message}", retry_after=wait
        )
    if status == 401:
        return Permanent(f"HubSpot refused the token (401): {message}")
    if status == 403:
        return Permanent(f"HubSpot: the token lacks a scope for this (403): {message}")
    if status == 404:
        return Permanent(
            f"HubSpot: the record does not exist, or the token cannot see it (404): {message}"
        )
    if status in (408, 409, 423) or status >= 500:
        return Retryable(
            f"HubSpot answered {status}: {message}",
            retry_after=retry_after(headers.get("retry-after")),
        )
    return Permanent(f"HubSpot refused the write ({status}): {message}")


def _body(exc: Any) -> dict:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _message(exc: Any) -> str:
    """HubSpot's error category (``OBJECT_NOT_FOUND``) or status, never its message: no answer's text goes
    to the tenant."""
    category = str(_body(exc).get("category") or "")
    return category if _CODE.fullmatch(category) else f"{exc.status or 'no'} status"


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _texts(properties: dict[str, Any]) -> dict[str, str]:
    """HubSpot takes every property value as a string."""
    return {name: "" if value is None else str(value) for name, value in properties.items()}
