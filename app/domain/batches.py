"""Batches: one document per row, each row an ordinary task (records, resume, destinations, exports and
write-back apply as for one submit), handed to the API at its own pace.

- **Checked whole first.** Every row's prompt is rendered (Jinja2's sandbox, ``{{column}}``; a column the
  row lacks is an error naming the row and the column) and its record key checked before anything starts;
  the first 50 faults are answered with their count.
- **At the API's pace.** A tenant's batch rows in the API at once are limited (app.stores.batches claims
  them in Lua): the limit starts at 2, grows by about one per round of rows handed over without trouble,
  halves when the API answers a hand-over with 429 (a retry that got through included) or is unavailable,
  and holds back 5 s. Single submits never go through this feed, so a batch never queues them.
- **Crash-safe.** A row is claimed with its task id; the task is made under that id, so a worker that died
  in between leaves a row the next tick finishes, never a second task.
- **Rows end with their tasks** (app.domain.batch_rows), which frees their place and feeds the next; the
  batch completes when every row has ended. ``on_error: stop`` cancels the rest at the first failed row;
  ``skip_done`` skips a row whose record already has a completed task for the same
  rendered prompt and format."""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Protocol

from app.core.errors import Invalid, Unavailable
from app.core.states import TASK_ENDED, BatchStatus, RowState, TaskStatus
from app.domain import batch_rows, batch_template, budgets, sealing, submit, tracking, write_back
from app.domain.batch_template import RowFault
from app.stores.batches import Batch, BatchRow
from app.stores.tenants import Tenant


class Needs(submit.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""


log = logging.getLogger(__name__)

MAX_ROWS = 10_000
MAX_ERRORS = 50
FIRST_LIMIT = 2
HOLD_SECONDS = 5.0
"""How long the feed holds back after the API refused a hand-over for now (429, 5xx)."""
ROW_PROMPT = "{{ prompt }}"
"""The template of a batch that gives none: each row's own ``prompt`` column (what the Zapier and Make apps
send, since both read ``{{...}}`` as their own mapping)."""
_ROW_FIELD = re.compile(r"rows\.(\d+)(?:\.(.+))?")
_ROW_FIELDS = ("format", "destinations", "export", "write_back")


class BatchInvalid(Invalid):
    """Every fault of a batch checked whole: the first in the message and the field, the first MAX_ERRORS
    listed with their count. A row of a CSV upload is also named by its line in the file."""

    def __init__(self, faults: list[RowFault]):
        first = faults[0]
        where = ", ".join(
            part
            for part in (
                f"row {first.row}" if first.row else "",
                f"line {first.line} of the file" if first.line else "",
                first.column if first.column != "file" else "",
            )
            if part
        )
        super().__init__(
            "invalid_batch",
            f"{_at_fault(len(faults))}; the first: {where or 'the file'}: {first.message}",
            field=f"rows.{first.row - 1}.{first.column}" if first.row else first.column or "rows",
            errors=[_fault_view(f) for f in faults[:MAX_ERRORS]],
            count=len(faults),
        )


def _fault_view(fault: RowFault) -> dict:
    view = {"row": fault.row, "column": fault.column, "message": fault.message}
    return {**view, "line": fault.line} if fault.line else view


def _at_fault(count: int) -> str:
    return "1 row or column is at fault" if count == 1 else f"{count} rows or columns are at fault"


# -- making one ------------------------------------------------------------------------------------------


def row_faults(
    fields: list[tuple[str, str]], lines: list[int] | None = None
) -> list[RowFault] | None:
    """The schema's faults (field, message) as rows' faults, each row named by its number and its line in
    the file: None when the body itself is at fault."""
    faults: list[RowFault] = []
    for field, message in fields:
        found = _ROW_FIELD.fullmatch(field)
        if found is None:
            return None
        number = int(found.group(1)) + 1
        line = lines[number - 1] if lines and number <= len(lines) else 0
        column = found.group(2) or ""
        faults.append(RowFault(number, column, f"{column or 'the row'} {message}", line))
    return faults


def prepare(
    ctx: Needs,
    tenant: Tenant,
    body: dict,
    lines: list[int] | None = None,
    found: list[RowFault] | None = None,
) -> list[BatchRow]:
    """Each row rendered and checked, pending; raises BatchInvalid with every fault. ``lines``: where each
    row is in the tenant's file (a CSV upload), to name it as the person counts it; ``found``: the rows'
    faults found before (by the schema), listed with the others."""
    earlier: dict[int, list[RowFault]] = {}
    for fault_found in found or []:
        earlier.setdefault(fault_found.row, []).append(fault_found)
    given = body.get("prompt_template")
    keys = [str(values.get("record_key") or "").strip() for values in body["rows"]]
    try:
        rendered = batch_template.render_all(
            given or ROW_PROMPT,
            [{**values, "record_key": key} for values, key in zip(body["rows"], keys, strict=True)],
            batch_template.Budget(
                seconds=ctx.config.batch_render_seconds,
                memory_bytes=ctx.config.batch_render_memory_mb * 1024 * 1024,
                total_chars=ctx.config.batch_max_prompt_chars,
                at_once=ctx.config.batch_renders_at_once,
            ),
        )
    except batch_template.TemplateInvalid as exc:
        raise BatchInvalid([RowFault(0, "prompt_template", exc.message)]) from None
    except batch_template.Busy:
        raise Unavailable(
            "batches_busy",
            "This relay is checking as many batches as it may at once; try again in a few seconds.",
            headers={"Retry-After": str(math.ceil(ctx.config.batch_render_seconds))},
        ) from None
    by_row = {fault.row: fault for fault in rendered.faults}
    rows: list[BatchRow] = []
    faults: list[RowFault] = []

    def fault(number: int, column: str, message: str) -> None:
        line = lines[number - 1] if lines and number <= len(lines) else 0
        faults.append(RowFault(number, column, message, line))

    for number, record_key in enumerate(keys, start=1):
        prompt = rendered.prompts[number - 1] if number <= len(rendered.prompts) else None
        if number in earlier:
            faults.extend(earlier[number])
            continue
        if not record_key:
            fault(number, "record_key", "every row needs a record_key")
            continue
        if number in by_row:
            found = by_row[number]
            message = found.message
            if message == batch_template.UNDEFINED:
                message = (
                    f"the template names {{{{{found.column}}}}}, which this row has no column for"
                    if given
                    else "without a prompt_template, each row's prompt column is its prompt"
                )
            fault(number, found.column, message)
            continue
        if prompt is None:  # not reached: the budget ran out on a row before it
            break
        if not prompt:
            fault(
                number, "prompt_template" if given else "prompt", "the prompt is empty for this row"
            )
            continue
        if body.get("write_back"):
            try:
                write_back.connection_for(
                    ctx, tenant.tenant_id, submit.write_back_asked(body["write_back"]), record_key
                )
            except write_back.WriteBackRefused as exc:
                if exc.field != "record_key":
                    raise  # the connection itself is at fault, whatever the row
                fault(number, "record_key", exc.message)
                continue
        rows.append(BatchRow(number, record_key, prompt, RowState.PENDING))
    if faults:
        raise BatchInvalid(faults)
    return rows


def create(
    ctx: Needs,
    tenant: Tenant,
    body: dict,
    lines: list[int] | None = None,
    found: list[RowFault] | None = None,
) -> Batch:
    """A batch, checked whole; raises BatchInvalid, WriteBackRefused, or BudgetExceeded when the tenant's
    capped budget is spent (a row whose record's budget is spent fails when its turn comes)."""
    budgets.check(ctx, tenant.tenant_id, None)
    rows = prepare(ctx, tenant, body, lines, found)
    settings = {
        name: body[name]
        for name in (*_ROW_FIELDS, "prompt_template", "callback_url")
        if name in body
    }
    settings.update(
        on_error=body.get("on_error", "continue"), skip_done=body.get("skip_done", True)
    )
    if settings.get("destinations"):  # inline configs hold secrets: sealed before they are stored
        settings["destinations"] = sealing.seal_destinations(ctx.box, settings["destinations"])
    mark = ctx.primary.mark()
    batch = ctx.batches.create(tenant.tenant_id, settings, rows)
    ctx.queues.batch_feed(batch.batch_id)
    ctx.primary.replicated(mark)
    return batch


# -- feeding the API ---------------------------------------------------------------------------------------


def feed(ctx: Needs, batch_id: str, now: float | None = None) -> int:
    """Hand over rows while the tenant's feed has room; returns how many were handed over. ``now``: a test's
    clock."""
    batch = ctx.batches.get(batch_id)
    tenant = ctx.tenants.get(batch.tenant_id) if batch else None
    if batch is None or tenant is None:
        return 0
    handed = 0
    while (row := ctx.batches.claim(batch_id, tenant.tenant_id, FIRST_LIMIT, now=now)) is not None:
        _start(ctx, tenant, batch, row, now)
        handed += 1
    # every row skipped, or ended before this feed saw it
    batch_rows.complete_if_done(ctx, batch_id)
    hold = ctx.batches.feed(tenant.tenant_id).get("hold_until", 0.0) - (
        time.time() if now is None else now
    )
    # nothing else may wake the feed when the hold is over
    if hold > 0 and ctx.batches.waiting(batch_id):
        ctx.queues.batch_feed(batch_id, delay=hold)
    return handed


def tick(ctx: Needs, now: float | None = None) -> int:
    """The reconciler's look at running batches: rows whose claim outlived its worker are started, and the
    feed goes on (a feed job lost with a worker, a hold that is over). ``now``: a test's clock."""
    handed, clock = 0, time.time() if now is None else now
    for batch_id in ctx.batches.running():
        batch = ctx.batches.get(batch_id)
        tenant = ctx.tenants.get(batch.tenant_id) if batch else None
        if batch is None or tenant is None:
            ctx.batches.ended(batch_id, batch.tenant_id if batch else "")
            continue
        # only the stale claims are read (an index of them), not every row
        if batch.counts[RowState.SUBMITTING]:
            for row in ctx.batches.claimed_before(
                batch, clock - ctx.config.batch_claim_stale_seconds
            ):
                if ctx.tasks.get(row.task_id or "") is None:
                    log.warning(
                        "batch %s row %s: its claim outlived its worker; started now",
                        batch_id,
                        row.row,
                    )
                    _start(ctx, tenant, batch, row, now)
        handed += feed(ctx, batch_id, now)
    return handed


def _start(
    ctx: Needs, tenant: Tenant, batch: Batch, row: BatchRow, now: float | None = None
) -> None:
    """Hand a claimed row (it has its task id) to the API as an ordinary submit."""
    settings = batch.settings
    if settings.get("skip_done") and _done_before(ctx, tenant.tenant_id, row, settings["format"]):
        ctx.batches.move(batch, row.row, RowState.SKIPPED, frees_place=True)
        return
    task = ctx.tasks.get(row.task_id or "")
    if task is None:
        request = submit.SubmitRequest(
            format=settings["format"],
            prompt=row.prompt,
            record_key=row.record_key,
            destinations=settings.get("destinations") or [],
            export=settings.get("export"),
            write_back=submit.write_back_asked(settings.get("write_back")),
        )
        try:
            task = submit.submit(
                ctx,
                tenant,
                request,
                task_id=row.task_id,
                batch_id=batch.batch_id,
                batch_row=row.row,
            )
        # since the batch was checked
        except (
            write_back.WriteBackRefused,
            budgets.BudgetExceeded,
        ) as exc:
            ctx.batches.move(batch, row.row, RowState.FAILED, frees_place=True, error=exc.message)
            return
    # it ended at once (refused): its follow-ups may have run before the claim
    if task.status in TASK_ENDED:
        batch_rows.row_ended(ctx, task)
        return
    # cancelled while it was handed over
    if (ctx.batches.get(batch.batch_id) or batch).status != BatchStatus.RUNNING:
        tracking.cancel(ctx, tenant, ctx.tasks.get(task.task_id) or task)
        return
    # the API said 429 or 5xx: slow down
    if task.status == TaskStatus.PENDING_SUBMIT or task.throttled:
        # no row goes before the API's Retry-After either
        waited = (task.submit_not_before or 0.0) - time.time()
        _slow_down(ctx, tenant.tenant_id, max(HOLD_SECONDS, waited), now)
    else:
        _speed_up(ctx, tenant.tenant_id)
    ctx.batches.move(batch, row.row, RowState.RUNNING)


def cancel(ctx: Needs, batch: Batch, reason: BatchStatus = BatchStatus.CANCELLED) -> int:
    """Rows not yet handed over are cancelled; rows in the API are cancelled there and end with their tasks.
    Returns how many rows were cancelled or asked to cancel. A row being handed over meanwhile cancels its
    own task once it sees the batch is no longer running (``_start``)."""
    ctx.batches.set(batch.batch_id, status=reason)  # no row is claimed from here on
    waiting = ctx.batches.waiting(batch.batch_id)
    ctx.batches.clear_waiting(batch.batch_id)
    for number in waiting:
        ctx.batches.move(batch, number, RowState.CANCELLED)
    tenant, asked = ctx.tenants.get(batch.tenant_id), 0
    for row in ctx.batches.rows(batch.batch_id):
        task = (
            ctx.tasks.get(row.task_id or "")
            if row.state in (RowState.SUBMITTING, RowState.RUNNING)
            else None
        )
        if task and tenant is not None:
            asked += tracking.cancel(ctx, tenant, task)
    batch_rows.complete_if_done(ctx, batch.batch_id)
    return len(waiting) + asked


def _done_before(ctx: Needs, tenant_id: str, row: BatchRow, fmt: str) -> bool:
    for task_id in ctx.records.task_ids(tenant_id, row.record_key):
        task = ctx.tasks.get(task_id)
        if (
            task
            and task.status == TaskStatus.COMPLETED
            and task.format == fmt
            and task.prompt == row.prompt
        ):
            return True
    return False


def _speed_up(ctx: Needs, tenant_id: str) -> None:
    limit = ctx.batches.feed(tenant_id).get("limit", FIRST_LIMIT)
    ctx.batches.adjust_feed(
        tenant_id, min(float(ctx.config.batch_max_concurrency), limit + 1.0 / max(limit, 1.0))
    )


def _slow_down(ctx: Needs, tenant_id: str, seconds: float, now: float | None = None) -> None:
    limit = ctx.batches.feed(tenant_id).get("limit", FIRST_LIMIT)
    ctx.batches.slow_feed(
        tenant_id, max(1.0, limit / 2), hold_until=(time.time() if now is None else now) + seconds
    )


def retry(ctx: Needs, batch: Batch) -> int:
    """The failed rows only, again: returns how many."""
    failed = [row.row for row in ctx.batches.rows(batch.batch_id) if row.state == RowState.FAILED]
    for number in failed:
        ctx.batches.move(batch, number, RowState.PENDING, error="")
    if failed:
        ctx.batches.requeue(batch.batch_id, failed)
        ctx.batches.set(batch.batch_id, status=BatchStatus.RUNNING, ended_at=None)
        # subscribers and the callback learn when the batch is whole again
        ctx.batches.announce_again(batch.batch_id)
        ctx.batches.resumed(batch.tenant_id, batch.batch_id)
        ctx.queues.batch_feed(batch.batch_id)
    return len(failed)


# -- what people see ----------------------------------------------------------------------------------------


def page(
    ctx: Needs, batch: Batch, state: str | None, cursor: int, limit: int
) -> tuple[list[dict], int | None]:
    """Rows after row number ``cursor`` (in ``state``), and the cursor of the next page. Without a state, the
    page is read by row number (rows are numbered from 1); with one, the rows are scanned."""
    if state:
        rows = [
            row
            for row in ctx.batches.rows(batch.batch_id)
            if row.row > cursor and row.state == state
        ]
    else:
        rows = ctx.batches.rows_from(batch.batch_id, cursor + 1, limit + 1)
    chosen = rows[:limit]
    return [_row_view(row) for row in chosen], (chosen[-1].row if len(rows) > limit else None)


def _row_view(row: BatchRow) -> dict:
    return {
        "row": row.row,
        "record_key": row.record_key,
        "state": row.state,
        # a row retried keeps its last task until it is claimed again
        "task_id": row.task_id if row.state != RowState.PENDING else None,
        "credits_used": row.credits,
        "error": row.error,
    }
