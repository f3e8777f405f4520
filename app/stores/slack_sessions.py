"""What the background half of an /overten command keeps between its steps: that the command was
submitted (once), and the session of its task's progress posts through the command's response_url."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

SUBMITTED_LIFE = 86_400
"""How long a command is remembered as submitted: longer than any retry of its job."""


@dataclass(frozen=True)
class Session:
    response_url: str
    """Sealed (app.core.crypto): it lets anyone post into the channel."""
    deadline: float
    phase: str


class SlackSessions:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix

    def claim_command(self, command_id: str) -> bool:
        """True the first time only: the command's job may run again after a crash, its task must
        not."""
        key = f"{self._prefix}slack:started:{command_id}"
        return bool(self._redis.set(key, "1", nx=True, ex=SUBMITTED_LIFE))

    def start(self, task_id: str, sealed_url: str, deadline: float, life: float) -> None:
        key = self._key(task_id)
        pipe = self._redis.pipeline()
        fields = {
            "response_url": sealed_url,
            "deadline": deadline,
            "phase": "",
            "progress_posts": 0,
        }
        pipe.hset(key, mapping=fields)
        pipe.expire(key, int(life))
        pipe.execute()

    def get(self, task_id: str) -> Session | None:
        raw = self._redis.hgetall(self._key(task_id))
        if not raw:
            return None
        return Session(raw["response_url"], float(raw["deadline"]), raw.get("phase") or "")

    def new_phase(self, task_id: str, phase: str) -> int:
        """Note the task's phase; returns how many progress posts the session has made with this
        one."""
        pipe = self._redis.pipeline()
        pipe.hset(self._key(task_id), "phase", phase)
        pipe.hincrby(self._key(task_id), "progress_posts", 1)
        return pipe.execute()[1]

    def _key(self, task_id: str) -> str:
        return f"{self._prefix}slack:session:{task_id}"
