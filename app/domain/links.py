"""Signed links to a task's file and a batch's manifest (served by app/web/files.py). The API's own download
URLs expire after 24 hours; these always lead to a fresh download (and export), for no-code tools."""

from __future__ import annotations

from typing import Protocol

from app.core.config import RelayConfig
from app.core.tokens import Tokens


class Needs(Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    config: RelayConfig
    tokens: Tokens


def document_links(ctx: Needs, view: dict) -> dict:
    """The links of a completed task's view (its file, and its export if one was asked for)."""
    if view.get("status") != "completed" or not view.get("task_id"):
        return {}
    links = {"file_url": file_link(ctx, view["task_id"])}
    if view.get("export"):
        links["export_url"] = file_link(ctx, view["task_id"], view["export"])
    return links


def with_links(ctx: Needs, event: dict) -> dict:
    data = event.get("data") or {}
    return {**event, "data": {**data, **document_links(ctx, data)}}


def file_link(ctx: Needs, task_id: str, export: str = "", life_seconds: int | None = None) -> str:
    """``life_seconds``: how long the link works, when not RELAY_FILES_LINK_TTL_SECONDS."""
    return files_url(
        ctx, {"t": task_id, "x": export, **({"l": life_seconds} if life_seconds else {})}
    )


def files_url(ctx: Needs, payload: dict) -> str:
    """A signed /files/{token} link: a task's file, or a batch's manifest or ZIP."""
    return f"{ctx.config.public_url.rstrip('/')}/files/{ctx.tokens.file(payload)}"
