"""What a batch leaves: the manifest (a CSV of row, record, status, file link, credits and error) and a ZIP
of every finished file with the manifest, streamed as it is made: each file goes from the API's download
into the archive in 256 KiB pieces, so memory stays bounded whatever the batch's size (ZIP64 entries with
data descriptors: the archive is never sought back into)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from app.core import csv_safe
from app.core.states import RowState
from app.core.upstream import CHUNK, UpstreamClients, UpstreamError
from app.domain import links
from app.stores.batches import Batch, BatchRow, BatchStore
from app.stores.tasks import Task, TaskStore
from app.stores.tenants import TenantStore
from connectors.base import Document, Permanent


class Needs(links.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    upstream: UpstreamClients
    tenants: TenantStore
    tasks: TaskStore
    batches: BatchStore


def manifest(ctx: Needs, batch: Batch) -> str:
    """The manifest as Excel opens it: a byte-order mark (accents intact), no cell read as a formula (a
    record key or an error is text a tenant or the API chose)."""
    lines: list[list] = [["row", "record_key", "status", "file", "credits", "error"]]
    for row in ctx.batches.rows(batch.batch_id):
        link = (
            links.file_link(ctx, row.task_id)
            if row.state == RowState.COMPLETED and row.task_id
            else ""
        )
        lines.append([row.row, row.record_key, row.state, link, row.credits or "", row.error or ""])
    return csv_safe.write(lines, bom=True)


def archive(ctx: Needs, batch: Batch) -> Iterator[bytes]:
    """The ZIP, a piece at a time: ``{row:05d}-{record}.{ext}`` per finished row, then manifest.csv. A file
    the API can no longer give is left out, and the manifest says so."""
    tenant = ctx.tenants.get(batch.tenant_id)
    sink = _Sink()
    missing: list[str] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as out:
        for row in ctx.batches.rows(batch.batch_id):
            task = ctx.tasks.get(row.task_id or "") if row.state == RowState.COMPLETED else None
            if task is None or tenant is None or not task.run_id:
                continue
            try:
                yield from _entry(ctx, tenant, out, sink, task, row)
            except UpstreamError as exc:
                missing.append(f"row {row.row}: {exc.message}")
        notes = "".join(f"# not in this archive: {line}\n" for line in missing)
        out.writestr("manifest.csv", manifest(ctx, batch) + notes)
    yield sink.take()


def _entry(
    ctx: Needs, tenant, out: zipfile.ZipFile, sink: _Sink, task: Task, row: BatchRow
) -> Iterator[bytes]:
    artifacts = (task.result or {}).get("artifacts") or []
    extension = (
        (artifacts[0].get("file_name") or "file.bin").rpartition(".")[2] if artifacts else "bin"
    )
    record = "".join(c if c.isalnum() or c in "-_." else "_" for c in row.record_key)[:80]
    with ctx.upstream(tenant) as client:
        url = client.download_location(task.run_id)
        with (
            client.stream(url) as response,
            out.open(f"{row.row:05d}-{record}.{extension}", "w", force_zip64=True) as entry,
        ):
            for piece in response.iter_bytes(CHUNK):
                entry.write(piece)
                yield sink.take()


class _Sink(io.RawIOBase):
    """Where zipfile writes: kept until the response takes it (it cannot seek, so zipfile streams)."""

    def __init__(self):
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        parts, self._parts = self._parts, []
        return b"".join(parts)


def manifest_document(ctx: Needs, data: dict) -> Document:
    """The manifest as the file a batch's destinations get when it completes (``data``: the event's): whole in
    memory, a few hundred KiB for 10,000 rows, so every destination knows its size; the link leads to a fresh
    copy."""
    batch = ctx.batches.get(data["batch_id"])
    if batch is None:
        raise Permanent("the batch is gone (past retention)")
    content = manifest(ctx, batch).encode()

    @contextmanager
    def opened(offset: int) -> Iterator[Iterator[bytes]]:
        yield iter([content[offset:]])

    return Document(
        name=f"{batch.batch_id}-manifest.csv",
        content_type="text/csv",
        size=len(content),
        open=opened,
        link=data.get("manifest_url") or "",
    )
