"""/overten: read the command, answer at once (Slack gives 3 seconds), and leave the work to a job.

The answer is always ephemeral. Checks that need only Redis (is there a document in this channel, is the
prompt acceptable) happen here so a mistake is told at once; anything that calls the API is enqueued.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

import schemas
from app.core import storage
from app.core.formats import LABELS, export_formats
from app.core.ids import digest
from app.core.states import TASK_ENDED
from app.domain import budgets, exports
from app.domain.links import file_link
from app.stores.budgets import BudgetScopes
from app.stores.installations import InstallationStore
from app.stores.intake_stream import IntakeStream, Taken
from app.stores.tasks import Task
from app.stores.tenants import TenantStore


class Needs(budgets.Needs, exports.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    tenants: TenantStore
    intake: IntakeStream
    installations: InstallationStore


NEW_DOCUMENT = {"excel": "excel", "word": "word", "slides": "slides"}
VERBS = (*NEW_DOCUMENT, "continue", "status", "export", "cancel", "help")
USAGE = """*/overten* builds documents for this channel:
• `/overten excel|word|slides <prompt>`: a new workbook, document or deck
• `/overten continue <prompt>`: change this channel's latest document
• `/overten status`: how the latest one is doing
• `/overten export pdf|csv|png|html|txt|odt|odp`: a copy of it in another format
• `/overten cancel`: stop the latest one while it is still being made
• `/overten help`: this message"""


def channel_record_key(team_id: str, channel_id: str) -> str:
    """The record a channel's documents belong to: `/overten continue` resumes its latest one."""
    return f"slack:{team_id}:{channel_id}"


@dataclass(frozen=True)
class SlashCommand:
    team_id: str
    channel_id: str
    user_id: str
    text: str
    response_url: str
    trigger_id: str = ""

    @property
    def record_key(self) -> str:
        return channel_record_key(self.team_id, self.channel_id)

    @property
    def verb(self) -> str:
        return self.text.strip().split(maxsplit=1)[0].lower() if self.text.strip() else "help"

    @property
    def argument(self) -> str:
        parts = self.text.strip().split(maxsplit=1)
        return parts[1].strip() if len(parts) > 1 else ""


def ephemeral(text: str) -> dict:
    return {"response_type": "ephemeral", "text": text}


def acknowledge(ctx: Needs, command: SlashCommand) -> dict:
    """The immediate answer to a command; enqueues the work it calls for. When Redis refuses or is gone,
    a short answer says so (Slack would otherwise show a time-out): nothing was started."""
    try:
        return _answer(ctx, command)
    except RedisError as exc:
        kind = storage.trouble(exc)
        if kind is None:
            raise
        storage.count(kind, "slack", exc)
        return ephemeral(
            f":warning: Overten Relay can't take commands right now ({storage.IN_SHORT[kind]}). "
            "Nothing was started; try again in a minute."
        )


def _answer(ctx: Needs, command: SlashCommand) -> dict:
    tenant_id = ctx.installations.tenant_for(command.team_id)
    if tenant_id is None or ctx.tenants.get(tenant_id) is None:
        return ephemeral(
            "This workspace is not connected to Overten Relay yet. Ask an admin to install it: "
            f"{ctx.config.public_url.rstrip('/')}/slack/install"
        )
    verb = command.verb
    if verb in NEW_DOCUMENT:
        return _start(ctx, command, tenant_id, NEW_DOCUMENT[verb], resume=False)
    if verb == "continue":
        latest = _latest_task(ctx, tenant_id, command.record_key)
        if latest is None:
            return ephemeral(
                "There is no document in this channel yet. Start one with `/overten excel <prompt>`."
            )
        return _start(ctx, command, tenant_id, latest.format, resume=True)
    if verb == "status":
        return ephemeral(_status(ctx, tenant_id, command.record_key))
    if verb == "export":
        return _export(ctx, command, tenant_id)
    if verb == "cancel":
        return _cancel(ctx, command, tenant_id)
    if verb == "help":
        return ephemeral(USAGE)
    return ephemeral(f"I don't know `{verb[:40]}`.\n{USAGE}")


def _start(ctx: Needs, command: SlashCommand, tenant_id: str, fmt: str, resume: bool) -> dict:
    if not command.argument:
        return ephemeral(f"Tell me what to build: `/overten {command.verb} <prompt>`.")
    try:
        schemas.validate(
            "relay/submit-request.json",
            {"format": fmt, "prompt": command.argument, "record_key": command.record_key},
        )
    except schemas.SchemaViolation as exc:
        problem = exc.errors[0]
        return ephemeral(f"I can't use that {problem.field}: it {problem.message}.")
    work = {"format": fmt, "prompt": command.argument, "resume": resume}
    # one round trip when no capped budget applies: the intake script looks for one as it stores
    capped = ctx.budgets.scopes(tenant_id, command.record_key)
    if _enqueue(ctx, "start_document", command, unless_capped=capped, **work) is Taken.CAPPED:
        try:
            budgets.check(ctx, tenant_id, command.record_key)
        except budgets.BudgetExceeded as exc:
            return ephemeral(f":no_entry: Nothing was started. {exc.message}")
        _enqueue(ctx, "start_document", command, **work)
    what = LABELS.get(fmt, fmt).split(" (")[0].lower()
    action = "Changing this channel's" if resume else "Starting a new"
    return ephemeral(
        f":hourglass_flowing_sand: {action} {what}. Progress will show up here; "
        "the file will be posted in the channel when it is ready (usually 1-25 minutes)."
    )


def _export(ctx: Needs, command: SlashCommand, tenant_id: str) -> dict:
    fmt = command.argument.lower().lstrip(".")
    if fmt not in export_formats():
        return ephemeral(f"Export as one of {', '.join(export_formats())}: `/overten export pdf`.")
    if exports.latest_document(ctx, tenant_id, command.record_key) is None:
        return ephemeral("There is no finished document in this channel to export yet.")

    _enqueue(ctx, "export_document", command, format=fmt)
    return ephemeral(
        f":hourglass_flowing_sand: Making a {fmt.upper()} of this channel's document..."
    )


def _cancel(ctx: Needs, command: SlashCommand, tenant_id: str) -> dict:
    latest = _latest_task(ctx, tenant_id, command.record_key)
    if latest is None or latest.status in TASK_ENDED:
        state = f" (the latest {latest.status})" if latest else ""
        return ephemeral(f"Nothing is being made in this channel right now{state}.")
    _enqueue(ctx, "cancel_document", command, task_id=latest.task_id)
    return ephemeral(f":octagonal_sign: Cancelling task `{latest.task_id}`...")


def _enqueue(
    ctx: Needs,
    job: str,
    command: SlashCommand,
    unless_capped: BudgetScopes | None = None,
    **extra: object,
) -> Taken:
    """Hand the work to a job of app.domain.slack.background through the intake stream: one Redis
    call, durable, once per command; not when a capped budget of ``unless_capped`` exists. The
    response_url is a credential for 30 minutes, so it is stored sealed."""
    command_id = command.trigger_id or command.response_url
    request = {
        "team_id": command.team_id,
        "channel_id": command.channel_id,
        "user_id": command.user_id,
        "command_id": digest(command_id, 32),
        "response_url": ctx.box.seal(command.response_url),
        "received_at": time.time(),
        **extra,
    }
    return ctx.intake.record_command(job, request, command_id, unless_capped)


def _latest_task(ctx: Needs, tenant_id: str, record_key: str) -> Task | None:
    tasks = ctx.tasks.many(ctx.records.task_ids(tenant_id, record_key, limit=1))
    return tasks[0] if tasks else None


def _status(ctx: Needs, tenant_id: str, record_key: str) -> str:
    latest = _latest_task(ctx, tenant_id, record_key)
    if latest is None:
        return "There is no document in this channel yet. Start one with `/overten excel <prompt>`."
    what = LABELS.get(latest.format, latest.format)
    state = latest.status.replace("_", " ")
    if latest.status not in TASK_ENDED:
        phase = (latest.phase or "").replace("_", " ")
        state += f" ({phase}, {latest.progress}%)" if phase else ""
    lines = [f"*This channel's document:* {what}, latest task `{latest.task_id}`: {state}."]
    if latest.result:
        lines.append(latest.result.get("summary", ""))
    if latest.error:
        lines.append(f"Error: {latest.error.get('message', '')}")
    completed = exports.latest_document(ctx, tenant_id, record_key)
    if completed:
        lines.append(f"<{file_link(ctx, completed.task_id)}|Download the latest finished version>")
    return "\n".join(line for line in lines if line)
