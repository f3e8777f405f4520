"""The background half of /overten: submit, report progress through the command's response_url, export.

A response_url takes 5 messages within 30 minutes. One command spends at most 4: "started", two progress
updates, and the final word (the slack_reply delivery, which falls back to chat.postMessage after 30
minutes). Progress is checked every RELAY_SLACK_PROGRESS_SECONDS by a job that re-schedules itself.

The response_url is sealed where the command comes in (app.domain.slack.commands) and stays sealed at rest:
in the intake stream, in the progress session, and with the bot token in the task's slack_reply, which the
slack_reply delivery keeps as its config. Each job opens it once.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Protocol

from app.core.formats import LABELS
from app.core.outbound import OutboundPolicy
from app.core.states import TASK_ENDED
from app.core.upstream import UpstreamError
from app.domain import budgets, exports, submit, tracking
from app.domain.slack.commands import channel_record_key
from app.stores.audit import OK, Action, Actor, ActorKind, AuditLog, Target
from app.stores.installations import Installation, InstallationStore
from app.stores.slack_sessions import SlackSessions
from app.stores.tenants import Tenant


class Needs(exports.Needs, submit.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    installations: InstallationStore
    slack_sessions: SlackSessions
    audit: AuditLog


log = logging.getLogger(__name__)

RESPONSE_URL_LIFE = 30 * 60
MARGIN = 60  # seconds kept in hand before the response_url expires
PROGRESS_POSTS = 2


def start_document(ctx: Needs, request: dict) -> None:
    # the command's response_url, sealed where it came in: opened once for this job's messages
    response_url = ctx.box.open(request["response_url"])
    installation, tenant = _workspace(ctx, request)
    if installation is None or tenant is None:
        follow_up(ctx, response_url, "This workspace is no longer connected to Overten Relay.")
        return
    if not ctx.slack_sessions.claim_command(request["command_id"]):
        return  # this command was already submitted (the job ran again after a crash)
    channel, deadline = request["channel_id"], request["received_at"] + RESPONSE_URL_LIFE - MARGIN
    reply = {
        "response_url": response_url,
        "deadline": deadline,
        "bot_token": installation.bot_token,
        "channel": channel,
        "user": request["user_id"],
    }
    asked = submit.SubmitRequest(
        format=request["format"],
        prompt=request["prompt"],
        resume=request["resume"],
        record_key=channel_record_key(request["team_id"], channel),
        destinations=[
            {"kind": "slack", "config": {"channel": channel, "bot_token": installation.bot_token}}
        ],
    )
    try:
        # sealed once with the bot token: the slack_reply delivery's config as it is
        task = submit.submit(ctx, tenant, asked, slack_reply=ctx.box.seal(json.dumps(reply)))
    except budgets.BudgetExceeded as exc:  # spent between the command's answer and this job
        follow_up(ctx, response_url, f":no_entry: Nothing was started. {exc.message}")
        return
    if task.status in TASK_ENDED:
        return  # refused or already done: the slack_reply delivery says so
    # as it came in: sealed
    ctx.slack_sessions.start(
        task.task_id, request["response_url"], deadline, life=RESPONSE_URL_LIFE * 2
    )
    what = LABELS.get(task.format, task.format)
    follow_up(
        ctx,
        response_url,
        f":hammer_and_wrench: Working on it: {what}, task `{task.task_id}`.",
    )
    _schedule_progress(ctx, task.task_id)


def watch_progress(ctx: Needs, task_id: str, now: float | None = None) -> None:
    """Post a progress update when the phase changed (at most PROGRESS_POSTS), then look again later; not
    past the response_url's deadline (``now``: the clock's unless a test sets it)."""
    session = ctx.slack_sessions.get(task_id)
    task = ctx.tasks.get(task_id)
    now = time.time() if now is None else now
    if session is None or task is None or task.status in TASK_ENDED or now > session.deadline:
        return
    task = tracking.refresh(ctx, task, min_age_seconds=0)
    if task.status in TASK_ENDED:
        return
    phase = task.phase or ""
    changed = phase and phase != session.phase
    if changed and ctx.slack_sessions.new_phase(task_id, phase) <= PROGRESS_POSTS:
        turn = f", turn {task.turn_index}" if task.turn_index is not None else ""
        follow_up(
            ctx,
            ctx.box.open(session.response_url),
            f":hourglass_flowing_sand: {phase.replace('_', ' ').capitalize()}: "
            f"{task.progress}%{turn}.",
        )
    _schedule_progress(ctx, task_id)


def export_document(ctx: Needs, request: dict) -> None:
    response_url = ctx.box.open(request["response_url"])
    _, tenant = _workspace(ctx, request)
    record_key = channel_record_key(request["team_id"], request["channel_id"])
    task = exports.latest_document(ctx, tenant.tenant_id, record_key) if tenant else None
    if tenant is None or task is None:
        follow_up(ctx, response_url, "There is no finished document in this channel to export.")
        return
    fmt = request["format"]
    try:
        link = exports.export_link(ctx, tenant, task, fmt)
    except UpstreamError as exc:
        follow_up(ctx, response_url, f":x: The {fmt.upper()} export failed: {exc.message}")
        return
    follow_up(
        ctx,
        response_url,
        f"<@{request['user_id']}> exported this channel's document: "
        f"<{link}|Download the {fmt.upper()}>",
        in_channel=True,
    )


def cancel_document(ctx: Needs, request: dict) -> None:
    """/overten cancel: the channel's running task, cancelled at the API; its final word (the slack_reply
    delivery) says cancelled in the thread it was started from."""
    response_url = ctx.box.open(request["response_url"])
    _, tenant = _workspace(ctx, request)
    task = ctx.tasks.get(request["task_id"], tenant.tenant_id) if tenant else None
    if task is None:
        follow_up(ctx, response_url, "That task is gone.")
        return
    cancelled = tracking.cancel(ctx, tenant, task)
    _audit_cancel(ctx, request, tenant.tenant_id, task.task_id, cancelled)
    if cancelled:
        follow_up(
            ctx,
            response_url,
            f"<@{request['user_id']}> cancelled task `{task.task_id}`.",
            in_channel=True,
        )
        return
    ended = ctx.tasks.get(task.task_id) or task
    follow_up(
        ctx,
        response_url,
        f"Task `{task.task_id}` has ended ({ended.status}): nothing to cancel."
        if ended.status in TASK_ENDED
        else ":x: The API did not take the cancel; try again.",
    )


def follow_up(ctx: Needs, url: str, text: str, in_channel: bool = False) -> bool:
    """One message through a command's response_url (``url``, opened), through the outbound policy's client
    (checked at connect time, no redirect). False when Slack refused it."""
    policy = OutboundPolicy(ctx.config.outbound_allow, ca_file=ctx.config.outbound_ca_file)
    message = {"text": text, "response_type": "in_channel" if in_channel else "ephemeral"}
    try:
        with policy.client(timeout=10) as client:
            response = client.post(url, json=message)
    except Exception as exc:  # a follow-up is best effort; the final word has its own retries
        log.warning("Slack follow-up failed: %s", type(exc).__name__)
        return False
    if response.status_code != 200:
        log.warning("Slack follow-up refused: %s", response.status_code)
    return response.status_code == 200


def _workspace(ctx: Needs, request: dict) -> tuple[Installation | None, Tenant | None]:
    """The command's workspace installation and its tenant (either None when it has gone since)."""
    installation = ctx.installations.find(request["team_id"])
    return installation, ctx.tenants.get(installation.tenant_id) if installation else None


def _schedule_progress(ctx: Needs, task_id: str) -> None:
    ctx.queues.slack_progress(task_id, ctx.config.slack_progress_seconds)


def _audit_cancel(ctx: Needs, request: dict, tenant_id: str, task_id: str, cancelled: bool) -> None:
    """In the tenant's audit log: the Slack user (as Slack vouched for them, by the command's signature)
    cancelled the task, or tried to."""
    who = Actor(ActorKind.PERSON, f"slack:{request['team_id']}:{request['user_id']}", tenant_id)
    result = OK if cancelled else "not_cancelled"
    ctx.audit.append(
        who, Action.TASK_CANCELLED, Target("task", task_id), result, "slack", tenant_id
    )
