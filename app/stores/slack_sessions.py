"""What the background half of an /overten command keeps between its steps: that the command was
submitted (once), and the session of its task's progress posts through the command's response_url."""

from __future__ import annotations

from dataclasses import dataclass

from app.stores.context import Context

SUBMITTED_LIFE = 86_400
"""How long a command is remembered as submitted: longer than any retry of its job."""


@dataclass(frozen=True)
class Session:
    response_url: str
    """Sealed (app.core.crypto): it lets anyone post into the channel."""
    deadline: float
    phase: str


def claim_command(ctx: Context, command_id: str) -> bool:
    """True the first time only: the command's job may run again after a crash, its task must not."""
    return bool(
        ctx.redis.set(ctx.key("slack", "started", command_id), "1", nx=True, ex=SUBMITTED_LIFE)
    )


def start(ctx: Context, task_id: str, sealed_url: str, deadline: float, life: float) -> None:
    key = _key(ctx, task_id)
    pipe = ctx.redis.pipeline()
    pipe.hset(
        key,
        mapping={
            "response_url": sealed_url,
            "deadline": deadline,
            "phase": "",
            "progress_posts": 0,
        },
    )
    pipe.expire(key, int(life))
    pipe.execute()


def get(ctx: Context, task_id: str) -> Session | None:
    raw = ctx.redis.hgetall(_key(ctx, task_id))
    if not raw:
        return None
    return Session(raw["response_url"], float(raw["deadline"]), raw.get("phase") or "")


def new_phase(ctx: Context, task_id: str, phase: str) -> int:
    """Note the task's phase; returns how many progress posts the session has made with this one."""
    pipe = ctx.redis.pipeline()
    pipe.hset(_key(ctx, task_id), "phase", phase)
    pipe.hincrby(_key(ctx, task_id), "progress_posts", 1)
    return pipe.execute()[1]


def _key(ctx: Context, task_id: str) -> str:
    return ctx.key("slack", "session", task_id)
